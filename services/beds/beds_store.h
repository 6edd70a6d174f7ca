// The beds service's SQL. Every function runs inside the caller's transaction; `now` comes from
// the injected clock, so expiry and staleness are testable without sleeping.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/pg.h"
#include "safeharbor/beds/v1/beds.pb.h"
#include "services/beds/availability.h"

namespace safeharbor::beds {

struct BedRow {
  v1::BedType type;
  Inventory inventory;
};

// A bed type's counts read under its row lock, and its active holds' expiry times.
struct LockedBeds {
  Inventory inventory;  // held: 0
  std::vector<absl::Time> hold_expiry;
  // The counts with the holds still active at `now`.
  Inventory At(absl::Time now) const;
};

struct AvailabilityQuery {
  const v1::SearchAvailabilityRequest* request;
  double origin_latitude;
  double origin_longitude;
  std::optional<std::pair<int64_t, std::string>> after;  // keyset (distance, facility id)
  int limit;
  absl::Time now;
  absl::Duration stale_after;
};

struct ExpiredHold {
  std::string id;
  std::string facility_id;
  v1::BedType bed_type;
};

struct StoredEvent {
  int64_t seq;
  std::string county_fips;
  std::string reason;
  v1::BedAvailability availability;
};

class BedsStore {
 public:
  static absl::Status InsertFacility(PgTx& tx, v1::Facility* f, absl::Time now);
  static absl::StatusOr<v1::Facility> GetFacility(PgTx& tx, absl::string_view id,
                                                  bool for_update = false);
  // GetFacility sent without waiting (its answer comes with the next wait).
  static PgPendingAs<v1::Facility> SendGetFacility(PgTx& tx, absl::string_view id,
                                                   bool for_update = false);
  static absl::Status UpdateFacility(PgTx& tx, v1::Facility* f, absl::Time now);
  static absl::StatusOr<std::vector<v1::Facility>> ListFacilities(PgTx& tx,
                                                                  absl::string_view org_id,
                                                                  absl::string_view county,
                                                                  absl::string_view after_id,
                                                                  int limit);

  // Locks the bed type's row (FOR UPDATE); NOT_FOUND if the facility lacks it. Writers lock
  // bed types in (facility_id, bed_type) order.
  static absl::Status LockInventory(PgTx& tx, absl::string_view facility_id, v1::BedType type);
  // The bed type's counts, with active holds as of `now`; NOT_FOUND if the facility lacks it.
  // Call LockInventory first when the answer decides a change.
  static absl::StatusOr<Inventory> GetInventory(PgTx& tx, absl::string_view facility_id,
                                                v1::BedType type, absl::Time now);
  // LockInventory then the counts, sent without waiting: read once the row is locked (a
  // statement of its own, so it sees every hold committed before the lock came), with the
  // expiry of every hold active after `since`; LockedBeds::At counts those active at a time read
  // once the answer came.
  static PgPendingAs<LockedBeds> SendLockedInventory(PgTx& tx, absl::string_view facility_id,
                                                     v1::BedType type, absl::Time since);
  static absl::StatusOr<std::vector<BedRow>> FacilityInventory(PgTx& tx,
                                                               absl::string_view facility_id,
                                                               absl::Time now);
  static absl::Status SetCensus(PgTx& tx, absl::string_view facility_id,
                                const v1::CensusEntry& entry, absl::Time confirmed_at);
  static absl::Status AdjustOccupied(PgTx& tx, absl::string_view facility_id, v1::BedType type,
                                     int32_t delta);

  // Sent without waiting: a failure fails the transaction (at the latest, its commit).
  static void InsertHold(PgTx& tx, const v1::Hold& hold, absl::string_view for_org);
  // Locks `for_org`'s holds until the transaction ends (every HoldBed for it waits here), then
  // counts its holds still active at `now`, up to `up_to` (the cap: more need not be counted);
  // sent without waiting.
  static PgPendingAs<int64_t> SendActiveHoldsFor(PgTx& tx, absl::string_view for_org,
                                                 absl::Time now, int64_t up_to);
  static absl::StatusOr<v1::Hold> GetHold(PgTx& tx, absl::string_view id, bool for_update);
  static absl::Status CloseHold(PgTx& tx, absl::string_view id, v1::HoldState state,
                                absl::Time now);
  // Moves an active hold's expiry (ExtendHold; the caller holds the hold's row lock).
  static absl::Status SetHoldExpiry(PgTx& tx, absl::string_view id, absl::Time expire_time);
  // Marks up to `limit` active holds past their expiry as expired (SKIP LOCKED: each hold is
  // expired by exactly one replica).
  static absl::StatusOr<std::vector<ExpiredHold>> ExpireHolds(PgTx& tx, absl::Time now, int limit);

  static absl::Status InsertPlacement(PgTx& tx, const v1::Placement& p);
  static absl::StatusOr<v1::Placement> GetPlacement(PgTx& tx, absl::string_view id,
                                                    bool for_update);
  static absl::Status SetDischarged(PgTx& tx, absl::string_view id, absl::Time now);

  // Sent without waiting, the transaction's last lock: a failure fails the transaction.
  static void AppendEvent(PgTx& tx, absl::string_view county_fips, absl::string_view reason,
                          const v1::BedAvailability& availability, absl::Time now);
  static absl::StatusOr<std::vector<StoredEvent>> EventsAfter(PgTx& tx, int64_t after_seq,
                                                              int limit);
  static absl::StatusOr<int64_t> LastEventSeq(PgTx& tx);

  static absl::StatusOr<std::vector<v1::FacilityAvailability>> Search(PgTx& tx,
                                                                      const AvailabilityQuery& q);
};

}  // namespace safeharbor::beds
