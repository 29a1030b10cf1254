// One @xmpp/client (xmpp.js) session, driven by the integration tests
// (tests/integration/jsclient.py) over stdin/stdout, one JSON object a line.
//
// Commands (stdin):
//   {"op":"login","service":"xmpp://127.0.0.1:5222","domain":"localhost",
//    "username":"alice","password":"...","resource":"js","mech":"SCRAM-SHA-1"}
//       -> {"ev":"online","jid":FULL,"mech":M,"offered":[...],"sm":bool,"secure":bool}
//          or {"ev":"login_failed","error":TEXT}
//   {"op":"send","xml":"<message .../>"}         a stanza (through the library's send,
//                                                so stream management counts it)
//   {"op":"iq","id":"q1","xml":"<iq .../>","timeout":10000}
//       -> {"ev":"iq","id":"q1","type":"result","xml":...}
//          or {"ev":"iq","id":"q1","type":"error","condition":C,"error_type":T}
//   {"op":"stop"}  closes the stream (</stream:stream>)   -> {"ev":"stopped"}
//   {"op":"drop"}  destroys the TCP connection, no close  -> {"ev":"dropped"}
//   {"op":"status"} -> {"ev":"status","sm":bool,"sm_id":ID,"outbound":N,"inbound":N}
//   {"op":"exit"}
// Events (stdout), besides the answers above:
//   {"ev":"stanza","xml":...}                every stanza received
//   {"ev":"roster_push","xml":...}           a roster push the client accepted
//   {"ev":"roster_push_ignored","from":F}    one it ignored (RFC 6121 2.1.6)
//   {"ev":"error","error":TEXT,"condition":C}, {"ev":"offline"}
//   {"ev":"sm_ack","xml":...}                 XEP-0198: the server acknowledged a stanza
//
// The library's own choices stay: its stream-feature order (STARTTLS, then
// SASL, then resource binding; XEP-0198 if the server offers it), its
// SCRAM-SHA-1 (GS2 flag 'n'). Only three things are set by the test: the
// mechanism (the library takes the first of SCRAM-SHA-1, PLAIN it finds
// offered; "mech" pins it so a silent fallback to PLAIN would fail the
// test), automatic reconnection is off (a test decides when to reconnect),
// and the self-signed certificate is accepted through
// NODE_TLS_REJECT_UNAUTHORIZED=0 in this process's environment only.
import { client } from "@xmpp/client";
import { parse } from "ltx";
import readline from "node:readline";

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const bare = (j) => String(j).split("/")[0].toLowerCase();

let xmpp = null;

async function login(cmd) {
  let used = null;
  let offered = [];
  xmpp = client({
    service: cmd.service,
    domain: cmd.domain,
    resource: cmd.resource,
    credentials: async (authenticate, mechanisms) => {
      offered = mechanisms;
      used = cmd.mech || mechanisms[0];
      await authenticate({ username: cmd.username, password: cmd.password }, used);
    },
  });
  xmpp.reconnect.stop();
  xmpp.on("error", (e) => out({ ev: "error", error: String(e), condition: e?.condition }));
  xmpp.on("offline", () => out({ ev: "offline" }));
  xmpp.on("stanza", (el) => out({ ev: "stanza", xml: el.toString() }));
  xmpp.streamManagement?.on("ack", (el) => out({ ev: "sm_ack", xml: el.toString() }));
  // RFC 6121 2.1.6: a client accepts a roster push only without 'from' or
  // with its own bare JID in 'from', and MUST ignore any other.
  xmpp.iqCallee.set("jabber:iq:roster", "query", (ctx) => {
    const from = ctx.stanza.attrs.from;
    if (from && bare(from) !== bare(xmpp.jid)) {
      out({ ev: "roster_push_ignored", from });
      return undefined; // the library answers <service-unavailable/>
    }
    out({ ev: "roster_push", xml: ctx.stanza.toString() });
    return {}; // empty result (RFC 6121 2.1.6)
  });
  try {
    const address = await xmpp.start();
    out({
      ev: "online",
      jid: address.toString(),
      mech: used,
      offered,
      sm: Boolean(xmpp.streamManagement?.enabled),
      secure: xmpp.isSecure(),
    });
  } catch (e) {
    out({ ev: "login_failed", error: String(e), condition: e?.condition });
  }
}

async function iq(cmd) {
  try {
    const res = await xmpp.iqCaller.request(parse(cmd.xml), cmd.timeout || 10000);
    out({ ev: "iq", id: cmd.id, type: "result", xml: res.toString() });
  } catch (e) {
    out({
      ev: "iq",
      id: cmd.id,
      type: e?.name === "StanzaError" ? "error" : "failed",
      condition: e?.condition,
      error_type: e?.type,
      error: String(e),
    });
  }
}

async function handle(cmd) {
  switch (cmd.op) {
    case "login":
      return login(cmd);
    case "send":
      return xmpp.send(parse(cmd.xml));
    case "iq":
      return iq(cmd);
    case "stop":
      try {
        await xmpp.stop();
      } catch (e) {
        out({ ev: "error", error: String(e) });
      }
      return out({ ev: "stopped" });
    case "status": {
      const sm = xmpp.streamManagement;
      return out({
        ev: "status",
        sm: Boolean(sm?.enabled),
        sm_id: sm?.id || "",
        outbound: sm?.outbound ?? 0,
        inbound: sm?.inbound ?? 0,
      });
    }
    case "drop":
      xmpp.socket?.socket?.destroy();
      return out({ ev: "dropped" });
    case "exit":
      process.exit(0);
    default:
      out({ ev: "error", error: "unknown op " + cmd.op });
  }
}

// One command at a time, in order.
let chain = Promise.resolve();
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (!line.trim()) return;
  chain = chain.then(() => handle(JSON.parse(line))).catch((e) => out({ ev: "error", error: String(e) }));
});
process.stdin.on("end", () => chain.then(() => process.exit(0)));
