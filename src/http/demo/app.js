// The demo front end: one customer's waiting challenges, live from the
// gateway's feed (Server-Sent Events read with fetch, so that the customer
// session goes in a header, and the feed resumes with Last-Event-ID). The
// page holds a customer session, never an API key: from its URL's fragment
// (#session=tfs_…, where TesBack would send the customer), pasted, or, on a
// development gateway without keys, started by the page itself. Every text
// from the server goes in with textContent.

const $ = (id) => document.getElementById(id);
const WAITING = new Set(["need", "question_sent"]);
const SAID = {
  need: "waiting for you",
  question_sent: "waiting for you",
  token_received: "sent, waiting for the bank",
  ok: "accepted by the bank (ok)",
  rejected: "refused by the bank (rejected)",
  expired: "expired",
  cancelled: "cancelled",
};
const TONE = { ok: "ok", rejected: "bad", expired: "bad", cancelled: "bad", token_received: "wait" };

/** The customer followed now: { customer, credential, lastId, controller, cards }. */
let session = null;

const bearer = (credential) => (credential ? { Authorization: `Bearer ${credential}` } : {});

function headers(extra = {}) {
  return { ...extra, ...bearer(session?.credential) };
}

async function request(method, path, body, auth) {
  const init = { method, headers: { ...auth, ...(body === undefined ? {} : { "Content-Type": "application/json" }) } };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  return { status: response.status, data };
}

/** A call with the session; a 401 means it has ended, and the page says so. */
async function api(method, path, body) {
  const current = session;
  const reply = await request(method, path, body, headers());
  if (reply.status === 401 && session === current) ended();
  return reply;
}

const message = (reply) => reply.data?.error?.message ?? `the gateway answered ${reply.status}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function setConnection(text) { $("connection").textContent = text; }

/** Follows the feed until the session changes, reconnecting with Last-Event-ID. */
async function follow(current) {
  let pause = 1000;
  while (session === current) {
    current.controller = new AbortController();
    try {
      const extra = { Accept: "text/event-stream" };
      if (current.lastId) extra["Last-Event-ID"] = current.lastId;
      const path = `/v1/customers/${encodeURIComponent(current.customer)}/events`;
      const response = await fetch(path, { headers: headers(extra), signal: current.controller.signal });
      if (response.ok) {
        setConnection("Live: new questions appear by themselves.");
        pause = (await read(current, response)) ?? pause;
      } else {
        const reply = { status: response.status, data: await response.json().catch(() => null) };
        if (response.status === 401) {
          if (session === current) ended();
          return;
        }
        if (response.status >= 400 && response.status < 500) {
          setConnection(`Cannot follow this customer: ${message(reply)}.`);
          return;
        }
      }
    } catch {
      if (current.controller.signal.aborted) return;
    }
    if (session !== current) return;
    setConnection("Connection lost; reconnecting…");
    await sleep(pause);
  }
}

/** Reads SSE blocks until the stream ends; returns the last retry hint. */
async function read(current, response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let retry = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return retry;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      retry = handle(current, block) ?? retry;
    }
  }
}

function handle(current, block) {
  let event = "message";
  let data = "";
  let retry = null;
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const field = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data += (data ? "\n" : "") + value;
    else if (field === "id") current.lastId = value;
    else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
  }
  if (session !== current || !data) return retry;
  const item = JSON.parse(data);
  if (event === "challenge") upsert(current, item);
  else if (event === "status") moved(current, item);
  return retry;
}

/** A challenge to show, new or a new attempt of one shown. */
function upsert(current, item) {
  let card = current.cards.get(item.access);
  if (!card) {
    card = { element: document.createElement("li") };
    card.element.className = "challenge";
    current.cards.set(item.access, card);
    $("challenges").prepend(card.element);
  }
  card.item = item;
  card.error = "";
  draw(current, card);
}

/** How far an attempt has gone: a status never goes back within one. */
const STAGE = { need: 0, question_sent: 1, token_received: 2, ok: 3, rejected: 3, expired: 3, cancelled: 3 };

function moved(current, change) {
  const card = current.cards.get(change.access);
  if (!card) return;
  if (change.attempt < card.item.attempt) return;
  // The answer to this page's own request can come after the feed already
  // told of a later status.
  const sameAttempt = change.attempt === card.item.attempt;
  if (sameAttempt && STAGE[change.status] <= STAGE[card.item.status]) return;
  card.item = { ...card.item, status: change.status, attempt: change.attempt };
  draw(current, card);
}

function element(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key in node && !key.startsWith("aria") && !key.startsWith("data")) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function draw(current, card) {
  const { item } = card;
  const waiting = WAITING.has(item.status);
  const id = `c-${item.access}`.replace(/[^A-Za-z0-9_-]/g, "_");
  card.element.dataset.access = item.access;
  card.element.dataset.status = item.status;
  card.element.dataset.tone = TONE[item.status] ?? "";
  card.element.setAttribute("aria-labelledby", `${id}-title`);
  const parts = [
    element("h3", { id: `${id}-title`, text: item.finEntityName }),
    element("p", { className: "question", text: item.doubleAuthQuestion }),
  ];
  if (item.instructions) parts.push(element("p", { className: "instructions", text: item.instructions }));
  const meta = element("p", { className: "meta" }, [
    element("span", {}, ["Status: ", element("span", { className: "status", text: SAID[item.status] ?? item.status })]),
    element("span", { text: `Attempt ${item.attempt}` }),
  ]);
  if (waiting) {
    meta.append(element("span", { className: "countdown", "data-expires": item.expiresAt, text: countdown(item.expiresAt) }));
  }
  parts.push(meta);
  if (waiting) parts.push(answerForm(current, card, id));
  card.element.replaceChildren(...parts);
}

function answerForm(current, card, id) {
  const { item } = card;
  const form = element("form", { className: "answer", noValidate: true });
  const error = element("p", { className: "error", id: `${id}-error`, role: "alert", text: card.error ?? "" });
  let read = () => "";
  if (item.kind === "decoupled") {
    form.append(element("p", {}, [
      element("span", { className: "spinner", "aria-hidden": "true" }),
      "Waiting for your approval in the bank's app.",
    ]));
  } else if (item.kind === "choice") {
    const fieldset = element("fieldset", {}, [element("legend", { text: "Choose one" })]);
    (item.choices ?? []).forEach((choice, i) => {
      const inputId = `${id}-choice-${i}`;
      fieldset.append(element("div", { className: "choice" }, [
        element("input", { type: "radio", name: `${id}-choice`, id: inputId, value: choice.value }),
        element("label", { htmlFor: inputId, text: choice.label }),
      ]));
    });
    form.append(fieldset);
    read = () => form.querySelector("input[type=radio]:checked")?.value ?? "";
  } else {
    if (item.kind === "image") {
      const image = element("img", { className: "bank-image", alt: `The image ${item.finEntityName} shows` });
      form.append(image);
      api("GET", `/v1/accesses/${encodeURIComponent(item.access)}`).then((reply) => {
        if (reply.status === 200 && reply.data?.image) image.src = reply.data.image;
      });
    }
    const inputId = `${id}-token`;
    const numeric = item.kind !== "text";
    const input = element("input", {
      id: inputId, name: "token", type: "text", autocomplete: "one-time-code",
      inputMode: numeric ? "numeric" : "text", "aria-describedby": `${id}-error`,
    });
    form.append(element("div", { className: "field" }, [
      element("label", { htmlFor: inputId, text: item.kind === "text" ? "Your answer" : "The code" }),
      input,
    ]));
    read = () => input.value.trim();
  }
  form.append(error);
  const actions = element("div", { className: "actions" });
  if (item.kind !== "decoupled") actions.append(element("button", { type: "submit", text: "Send" }));
  const cancel = element("button", { type: "button", className: "secondary", text: "Cancel" });
  actions.append(cancel);
  form.append(actions);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = read();
    if (!token) {
      error.textContent = item.kind === "choice" ? "Choose one first." : "Type the code first.";
      return;
    }
    const reply = await busy(form, () => api("POST", "/v1/tokens", { access: item.access, token, attempt: item.attempt }));
    if (reply.status === 200) {
      moved(current, { access: item.access, status: reply.data.status, attempt: reply.data.attempt });
    } else {
      card.error = `Not sent: ${message(reply)}.`;
      error.textContent = card.error;
      form.querySelector("input:not([type=radio])")?.focus();
    }
  });
  cancel.addEventListener("click", async () => {
    const path = `/v1/accesses/${encodeURIComponent(item.access)}/challenge`;
    const reply = await busy(form, () => api("DELETE", path));
    if (reply.status === 200) moved(current, { access: item.access, status: reply.data.status, attempt: reply.data.attempt });
    else error.textContent = `Not cancelled: ${message(reply)}.`;
  });
  return form;
}

async function busy(form, call) {
  const buttons = [...form.querySelectorAll("button")];
  buttons.forEach((button) => { button.disabled = true; });
  try {
    return await call();
  } catch {
    return { status: 0, data: { error: { message: "the gateway cannot be reached" } } };
  } finally {
    buttons.forEach((button) => { button.disabled = false; });
  }
}

function countdown(expiresAt) {
  const left = Math.max(0, Math.round((Date.parse(expiresAt) - Date.now()) / 1000));
  if (left === 0) return "expiring now";
  return `expires in ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
}

setInterval(() => {
  for (const node of document.querySelectorAll(".countdown")) node.textContent = countdown(node.dataset.expires);
}, 1000);

function start(customer, credential) {
  session?.controller?.abort();
  session = { customer, credential, lastId: null, controller: null, cards: new Map() };
  sessionStorage.setItem("twofa-demo", JSON.stringify({ customer, credential }));
  $("sign-in-error").textContent = "";
  $("challenges").replaceChildren();
  $("board-title").textContent = `Waiting for ${customer}`;
  $("connect").hidden = true;
  $("board").hidden = false;
  setConnection("Connecting…");
  follow(session);
}

/** Back to the form, saying why. */
function backToForm(why) {
  session?.controller?.abort();
  session = null;
  sessionStorage.removeItem("twofa-demo");
  $("board").hidden = true;
  $("connect").hidden = false;
  $("sign-in-error").textContent = why;
  $(why ? "session" : "customer").focus();
}

function ended() {
  backToForm("Your session has ended (it expired, or was revoked). Ask TesBack for a new one, and open its link or paste it here.");
}

/** Signing out ends the session at the gateway too. */
function leave() {
  const credential = session?.credential;
  backToForm("");
  if (credential) request("DELETE", "/v1/sessions/current", undefined, bearer(credential)).catch(() => {});
}

/** Follows whoever `credential` is a session for. */
async function resume(credential) {
  const reply = await request("GET", "/v1/sessions/current", undefined, bearer(credential)).catch(() => null);
  if (reply?.status === 200) start(reply.data.customer, credential);
  else if (reply?.status === 401) backToForm("This session is not known, or has ended. Ask TesBack for a new one.");
  else backToForm(`Cannot check this session: ${reply ? message(reply) : "the gateway cannot be reached"}.`);
}

/**
 * No session given: a development gateway without keys lets the page start
 * one for the customer typed; any other says it needs one from TesBack.
 */
async function mint(customer) {
  const path = `/v1/customers/${encodeURIComponent(customer)}/sessions`;
  const reply = await request("POST", path, undefined, {}).catch(() => null);
  if (reply?.status === 201) start(reply.data.customer, reply.data.session);
  else if (reply?.status === 401 || reply?.status === 403) {
    backToForm("This gateway needs a session from TesBack: open the link TesBack gives you, or paste its session " +
      "(`twofa-bridge session <customer>` prints one).");
  } else backToForm(`Cannot start a session: ${reply ? message(reply) : "the gateway cannot be reached"}.`);
}

new MutationObserver(() => {
  $("empty").hidden = $("challenges").children.length > 0;
}).observe($("challenges"), { childList: true });

/** A session's shape: anything else (an API key, say) is never sent. */
const SESSION = /^tfs_[A-Za-z0-9_-]{43}$/;

$("connect").addEventListener("submit", async (event) => {
  event.preventDefault();
  const credential = $("session").value.trim();
  const customer = $("customer").value.trim();
  $("session").value = "";
  const button = $("connect").querySelector("button");
  button.disabled = true;
  try {
    if (SESSION.test(credential)) await resume(credential);
    else if (credential) backToForm("That is not a session: TesBack's sessions start with tfs_.");
    else if (customer) await mint(customer);
    else backToForm("Type your customer id, or paste a session from TesBack.");
  } finally {
    button.disabled = false;
  }
});
$("leave").addEventListener("click", leave);

/**
 * A session in the fragment (never sent to a server) wins, on load or when
 * a link changes only the fragment; it leaves the address bar and the
 * history at once.
 */
function fromFragment() {
  const given = new URLSearchParams(location.hash.slice(1)).get("session");
  if (!given) return false;
  history.replaceState(null, "", location.pathname + location.search);
  backToForm("Checking your session…");
  resume(given);
  return true;
}

window.addEventListener("hashchange", fromFragment);
const saved = JSON.parse(sessionStorage.getItem("twofa-demo") ?? "null");
if (!fromFragment() && saved?.customer && saved.credential) start(saved.customer, saved.credential);
