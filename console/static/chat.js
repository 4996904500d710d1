// The case chat, for the customer (/secure/chat) and the agent (/cases/<id>).
// Messages are inserted with textContent only: nothing a participant writes is ever parsed as HTML.
// What was typed stays in the box until the server says it stored it ("sent", matched by the
// frame's ref); a refusal ("error": another agent took the case, too long, ...) leaves it there.
(function () {
  "use strict";
  var list = document.getElementById("chat");
  var form = document.getElementById("chat-form");
  var input = document.getElementById("chat-input");
  var status = document.getElementById("chat-status");
  if (!list) { return; }
  var me = list.getAttribute("data-me");
  var user = list.getAttribute("data-user");
  var path = list.getAttribute("data-ws");
  var seen = {};
  var socket = null;
  var retry = 1000;
  var pending = {};  /* ref -> the text sent with it, until the server acknowledges or refuses it */
  var sequence = 0;

  function who(sender) {
    if (me === "customer") {
      return sender === "customer" ? "You" : (sender === "agent" ? "Care team" : "Note");
    }
    return sender;
  }

  /* the agent's page says when and where each message was written, as the server renders it: a
     message arriving live was said in the secure chat (or by the service) today */
  function where(message) {
    var at = new Date(/[zZ]|[+-]\d\d:\d\d$/.test(message.at) ? message.at : message.at + "Z");
    var span = document.createElement("span");
    span.className = "where";
    var time = document.createElement("time");
    if (!isNaN(at.getTime())) {
      time.setAttribute("datetime", at.toISOString());
      time.textContent = at.toISOString().slice(11, 16);
    }
    span.appendChild(time);
    span.appendChild(document.createTextNode(" UTC · " + (message.sender === "system" ? "the service" : "secure chat")));
    return span;
  }

  function show(message) {
    if (seen[message.id]) { return; }
    seen[message.id] = true;
    var item = document.createElement("li");
    item.className = "msg " + (message.sender === "customer" || message.sender === "agent" ? message.sender : "system");
    item.setAttribute("data-id", String(message.id));
    var name = document.createElement("span");
    name.className = "who";
    name.textContent = who(message.sender);
    var body = document.createElement("bdi");  /* isolates a right-to-left override */
    body.className = "body";
    body.textContent = message.body;
    item.appendChild(name);
    if (me !== "customer" && message.at) { item.appendChild(where(message)); }
    item.appendChild(body);
    list.appendChild(item);
    item.scrollIntoView({block: "end"});
  }

  function say(text) { if (status) { status.textContent = text || ""; } }

  Array.prototype.forEach.call(list.querySelectorAll("li[data-id]"), function (li) {
    seen[li.getAttribute("data-id")] = true;
  });

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + path);
    socket.onopen = function () { retry = 1000; say(""); list.setAttribute("data-state", "open"); };
    socket.onmessage = function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      if (data.type === "history") { data.messages.forEach(show); }
      else if (data.type === "message") { show(data.message); }
      else if (data.type === "sent") {
        if (data.ref && Object.prototype.hasOwnProperty.call(pending, data.ref)) {
          if (input && input.value.trim() === pending[data.ref]) { input.value = ""; }
          delete pending[data.ref];
        }
        say("");
      }
      else if (data.type === "error") {
        var refused = data.ref && Object.prototype.hasOwnProperty.call(pending, data.ref);
        if (refused) { delete pending[data.ref]; }
        say(data.error + (refused ? " — not sent; your text is still in the box." : ""));
      }
      else if (data.type === "assigned" && me !== "customer") {
        var agent = document.getElementById("case-agent");
        if (agent) { agent.textContent = data.agent; }
        if (data.agent !== user) { say(data.agent + " took over this case: your messages will not be sent."); }
      }
      else if (data.type === "closed") {
        say("This conversation is closed.");
        if (form && input && input.value.trim()) {  /* keep an unsent text readable, but do not send it */
          say("This conversation is closed; your unsent text is still in the box.");
          Array.prototype.forEach.call(form.querySelectorAll("button"), function (b) { b.disabled = true; });
        } else if (form) { form.hidden = true; }
        socket.onclose = null;
      }
    };
    socket.onclose = function () {
      list.setAttribute("data-state", "reconnecting");
      say("Reconnecting…");
      window.setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  if (form && input) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      if (!text) { return; }
      if (!socket || socket.readyState !== WebSocket.OPEN) {
        say("Not connected: your text is kept; send it again when the chat is back.");
        return;
      }
      sequence += 1;
      var ref = "m" + sequence + "-" + Date.now();
      pending[ref] = text;
      socket.send(JSON.stringify({body: text, ref: ref}));
    });
  }
  connect();
}());
