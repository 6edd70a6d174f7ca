// Clients of the gateway (Connect protocol, binary), and errors worded for the person at the screen.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";

import { BedsService } from "../../gen/safeharbor/beds/v1/beds_pb.js";
import { DirectoryService } from "../../gen/safeharbor/directory/v1/directory_pb.js";
import { ReferralService } from "../../gen/safeharbor/referrals/v1/referrals_pb.js";

const transport = createConnectTransport({ baseUrl: location.origin, useBinaryFormat: true });
export const directory = createClient(DirectoryService, transport);
export const beds = createClient(BedsService, transport);
export const referrals = createClient(ReferralService, transport);

// Every unary call gives up after this long: the page says so rather than spinning.
export const CALL = { timeoutMs: 15000 };

export function describe(e: unknown): string {
  const err = ConnectError.from(e);
  const msg = err.rawMessage;
  // fetch() itself failed (connection refused or dropped): the gateway, not a service.
  if ((err.code === Code.Unknown || err.code === Code.Internal) && /network|fetch|load failed|terminated/i.test(msg)) {
    return `This terminal's gateway is not answering (${msg}). Check that it is running.`;
  }
  switch (err.code) {
    case Code.Unavailable:
      return /unreachable/.test(msg)
        ? `${cap(msg)}. Try again in a moment.`
        : `A service is unreachable right now (${msg}). Try again in a moment.`;
    case Code.DeadlineExceeded:
      return `No answer in time (${msg}). Try again in a moment.`;
    case Code.InvalidArgument:
      return `Please check the form: ${msg}.`;
    case Code.PermissionDenied:
      return `This terminal's organization may not do that: ${msg}.`;
    case Code.FailedPrecondition:
      return `Not possible right now: ${msg}.`;
    case Code.Aborted:
      return `Someone changed this at the same time: ${msg}. It has been reloaded; try again.`;
    case Code.NotFound:
      return `Not found: ${msg}.`;
    case Code.ResourceExhausted:
      return `Too busy right now: ${msg}. Try again shortly.`;
    case Code.Unimplemented:
      return "This terminal does not offer that call.";
    default:
      return `Something went wrong (${Code[err.code] ?? err.code}): ${msg}.`;
  }
}

const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

export function requestId(): string {
  return `web-${crypto.randomUUID()}`;
}
