// The case chat, for the customer (/secure/chat) and the agent (/cases/<id>).
// Messages are inserted with textContent only: nothing a participant writes is ever parsed as HTML.
(function () {
  "use strict";
  var list = document.getElementById("chat");
  var form = document.getElementById("chat-form");
  var input = document.getElementById("chat-input");
  var status = document.getElementById("chat-status");
  if (!list) { return; }
  var me = list.getAttribute("data-me");
  var path = list.getAttribute("data-ws");
  var seen = {};
  var socket = null;
  var retry = 1000;

  function who(sender) {
    if (me === "customer") {
      return sender === "customer" ? "You" : (sender === "agent" ? "Care team" : "Note");
    }
    return sender;
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
    socket.onopen = function () { retry = 1000; say(""); };
    socket.onmessage = function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      if (data.type === "history") { data.messages.forEach(show); }
      else if (data.type === "message") { show(data.message); }
      else if (data.type === "error") { say(data.error); }
      else if (data.type === "closed") {
        say("This conversation is closed.");
        if (form) { form.hidden = true; }
        socket.onclose = null;
      }
    };
    socket.onclose = function () {
      say("Reconnecting…");
      window.setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  if (form && input) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      if (!text || !socket || socket.readyState !== WebSocket.OPEN) { return; }
      socket.send(JSON.stringify({body: text}));
      input.value = "";
    });
  }
  connect();
}());
