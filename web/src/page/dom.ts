// A tiny DOM builder: no framework, every node is created with textContent (never innerHTML), so
// nothing a service returns can become markup.
type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | ((e: Event) => void)>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === "function") {
      el.addEventListener(k.replace(/^on/, ""), v as EventListener);
    } else if (k === "class") {
      el.className = String(v);
    } else if (v === true) {
      el.setAttribute(k, "");
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el: Node, children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
}

export function replace(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  append(el, children);
}

let seq = 0;
export function uid(prefix: string): string {
  return `${prefix}-${++seq}`;
}

// A labelled form control: <div class="field"><label for=id>…</label><input id=id …><hint></div>.
export function field(
  label: string,
  control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement,
  hint?: string,
): HTMLDivElement {
  if (!control.id) control.id = uid("f");
  const parts: Child[] = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hid = `${control.id}-hint`;
    control.setAttribute("aria-describedby", hid);
    parts.push(h("p", { class: "hint", id: hid }, hint));
  }
  return h("div", { class: "field" }, parts);
}

export function checkbox(label: string, attrs: Attrs = {}): { wrap: HTMLDivElement; input: HTMLInputElement } {
  const input = h("input", { type: "checkbox", id: uid("c"), ...attrs });
  return { wrap: h("div", { class: "check" }, input, h("label", { for: input.id }, label)), input };
}

export function radios(
  name: string,
  legend: string,
  options: [string, string][],
  checked: string,
): { set: HTMLFieldSetElement; value: () => string; inputs: HTMLInputElement[] } {
  const inputs = options.map(([value]) =>
    h("input", { type: "radio", name, value, id: uid(name), checked: value === checked }),
  );
  const set = h(
    "fieldset",
    { class: "choices" },
    h("legend", {}, legend),
    options.map(([, label], i) => h("div", { class: "check" }, inputs[i], h("label", { for: inputs[i].id }, label))),
  );
  return { set, inputs, value: () => inputs.find((i) => i.checked)?.value ?? "" };
}

export function dl(rows: [string, Child | Child[]][]): HTMLDListElement {
  return h(
    "dl",
    { class: "facts" },
    rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v as Child)]),
  );
}
