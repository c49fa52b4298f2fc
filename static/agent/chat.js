// The chat page: talks to /api/v1/ with the session cookie and the CSRF token.
// Answers and passages come from untrusted documents: every piece of model or document text is
// set with textContent, never parsed as HTML.
(function () {
  "use strict";

  const GENERIC_ERROR = "Something went wrong, please try again.";
  const MARKER = /\[(\d+)\]/g;

  const root = document.getElementById("chat");
  if (!root) return;

  const urls = {
    ask: root.dataset.askUrl,
    conversations: root.dataset.conversationsUrl,
    feedback: root.dataset.feedbackUrl,
  };
  const maxQuestionChars = parseInt(root.dataset.maxQuestionChars, 10) || 0;
  // The thumbs-down reasons, rendered by the server from the model's choices.
  const reasonOptions = document.getElementById("feedback-reasons");

  const byTestId = (id, scope) => (scope || root).querySelector(`[data-testid="${id}"]`);
  const ui = {
    conversationList: byTestId("conversation-list"),
    conversationEmpty: byTestId("conversation-empty"),
    newConversation: byTestId("new-conversation"),
    errorBanner: byTestId("error-banner"),
    errorText: byTestId("error-text"),
    errorDismiss: byTestId("error-dismiss"),
    messages: byTestId("message-list"),
    emptyState: byTestId("empty-state"),
    composer: byTestId("composer"),
    input: byTestId("question-input"),
    send: byTestId("send"),
    charCount: byTestId("char-count"),
    panel: byTestId("citation-panel"),
    panelNumber: byTestId("citation-number"),
    panelDocument: byTestId("citation-document"),
    panelLocation: byTestId("citation-location"),
    panelText: byTestId("citation-text"),
    panelClose: byTestId("citation-close"),
  };

  const state = { conversationId: null, busy: false, activeCitation: null };

  // --- HTTP -------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, code) {
      super(message);
      this.code = code;
    }
  }

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(method, url, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      headers["X-CSRFToken"] = csrfToken();
    }
    let response;
    try {
      response = await fetch(url, {
        method,
        headers,
        credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (networkError) {
      throw new ApiError(GENERIC_ERROR, "network_error");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (parseError) {
      data = null;
    }
    if (!response.ok) {
      const error = data && data.error;
      if (response.status === 401 || response.status === 403) {
        if (!error || error.code === "not_authenticated") {
          throw new ApiError("Your session has ended. Please reload the page and sign in.", "auth");
        }
      }
      const message = error && typeof error.message === "string" ? error.message : GENERIC_ERROR;
      throw new ApiError(message, error && error.code);
    }
    return data;
  }

  // --- Small DOM helpers ------------------------------------------------------------------------

  function el(tag, options) {
    const node = document.createElement(tag);
    const opts = options || {};
    if (opts.className) node.className = opts.className;
    if (opts.testId) node.dataset.testid = opts.testId;
    if (opts.text !== undefined) node.textContent = opts.text;
    if (opts.attrs) {
      for (const [name, value] of Object.entries(opts.attrs)) node.setAttribute(name, value);
    }
    return node;
  }

  function showError(message) {
    ui.errorText.textContent = message || GENERIC_ERROR;
    ui.errorBanner.hidden = false;
  }

  function clearError() {
    ui.errorBanner.hidden = true;
    ui.errorText.textContent = "";
  }

  function scrollToBottom() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function formatDate(value) {
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return "";
    const sameDay = date.toDateString() === new Date().toDateString();
    return sameDay
      ? date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })
      : date.toLocaleDateString(undefined, { day: "numeric", month: "short" });
  }

  // Only same-origin paths become links; anything else (javascript:, other hosts) is dropped.
  function safePath(url) {
    return typeof url === "string" && url.startsWith("/") && !url.startsWith("//") ? url : null;
  }

  // --- Citations --------------------------------------------------------------------------------

  // Accepts the API shape ({document: {id, title}, url}) and tolerates a flat stored one.
  function normaliseCitation(raw) {
    const documentInfo = raw.document || {};
    const documentId = documentInfo.id || raw.document_id || null;
    return {
      number: Number(raw.number),
      title: documentInfo.title || raw.document_title || "Untitled document",
      page: raw.page === null || raw.page === undefined ? null : raw.page,
      heading: raw.heading || "",
      text: raw.text || "",
      url: safePath(raw.url) || (documentId ? `/documents/${documentId}/file` : null),
    };
  }

  // The passage as paragraphs; the answer's sentence is marked where the passage contains it
  // word for word (always for the extractive answerer, sometimes for a language model).
  function renderPassage(text, quote) {
    let mark = null;
    ui.panelText.replaceChildren();
    for (const paragraph of text.split(/\n\s*\n/)) {
      const trimmed = paragraph.trim();
      if (!trimmed) continue;
      const p = el("p");
      const at = quote && !mark ? trimmed.indexOf(quote) : -1;
      if (at >= 0) {
        mark = el("mark", { testId: "citation-quote", text: quote });
        p.append(trimmed.slice(0, at), mark, trimmed.slice(at + quote.length));
      } else {
        p.textContent = trimmed;
      }
      ui.panelText.append(p);
    }
    return mark;
  }

  function openCitation(citation, button, quote) {
    if (state.activeCitation) state.activeCitation.classList.remove("active");
    state.activeCitation = button || null;
    if (button) button.classList.add("active");

    ui.panelNumber.textContent = String(citation.number);
    ui.panelDocument.textContent = citation.title;
    if (citation.url) ui.panelDocument.setAttribute("href", citation.url);
    else ui.panelDocument.removeAttribute("href");

    const location = [];
    if (citation.page !== null) location.push(`Page ${citation.page}`);
    if (citation.heading) location.push(citation.heading);
    ui.panelLocation.textContent = location.join(" · ");
    ui.panelLocation.hidden = location.length === 0;

    const mark = renderPassage(citation.text, quote);
    ui.panel.hidden = false;
    root.classList.add("panel-open");
    ui.panel.scrollTop = 0;
    if (mark) mark.scrollIntoView({ block: "nearest" });
  }

  function closeCitation(restoreFocus) {
    ui.panel.hidden = true;
    root.classList.remove("panel-open");
    if (state.activeCitation) {
      state.activeCitation.classList.remove("active");
      if (restoreFocus === true) state.activeCitation.focus();
    }
    state.activeCitation = null;
  }

  function citationButton(citation, testId, label, quote) {
    const button = el("button", {
      className: "cite",
      testId,
      text: label,
      attrs: { type: "button", "aria-label": `Source ${citation.number}: ${citation.title}` },
    });
    button.addEventListener("click", () => openCitation(citation, button, quote));
    return button;
  }

  // The answer text with each [n] that matches a citation turned into a button.
  function renderAnswerText(text, citations) {
    const byNumber = new Map(citations.map((c) => [c.number, c]));
    const body = el("div", { className: "answer-text", testId: "answer-text" });
    for (const paragraph of text.split(/\n{2,}/)) {
      const p = el("p");
      let last = 0;
      let sentence = "";
      for (const match of paragraph.matchAll(MARKER)) {
        const citation = byNumber.get(Number(match[1]));
        if (!citation) continue;
        const before = paragraph.slice(last, match.index);
        if (before) p.append(before);
        // The sentence a marker closes; "[1][2]" share the sentence before the first one.
        if (before.trim()) sentence = before.trim();
        const quote = sentence.length >= 12 ? sentence : "";
        const label = String(citation.number);
        p.append(citationButton(citation, `citation-${citation.number}`, label, quote));
        last = match.index + match[0].length;
      }
      if (last < paragraph.length) p.append(paragraph.slice(last));
      body.append(p);
    }
    return body;
  }

  function renderSources(citations) {
    const list = el("ol", { className: "sources", testId: "sources" });
    for (const citation of citations) {
      const item = el("li");
      const page = citation.page !== null ? `, p. ${citation.page}` : "";
      const label = `${citation.title}${page}`;
      const button = citationButton(citation, `source-${citation.number}`, "");
      button.className = "source";
      button.append(el("span", { className: "source-number", text: String(citation.number) }));
      button.append(el("span", { className: "source-title", text: label }));
      item.append(button);
      list.append(item);
    }
    return list;
  }

  // --- Feedback ---------------------------------------------------------------------------------

  // Feather icons (MIT), drawn with the DOM so no markup is parsed.
  const ICONS = {
    thumbsUp:
      "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 " +
      "0 1-2-2v-7a2 2 0 0 1 2-2h3",
    thumbsDown:
      "M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3zm7-13h2.67A2.31 " +
      "2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17",
  };

  function svgIcon(pathData) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    const attrs = {
      viewBox: "0 0 24 24",
      width: "16",
      height: "16",
      fill: "none",
      stroke: "currentColor",
      "stroke-width": "2",
      "stroke-linecap": "round",
      "stroke-linejoin": "round",
      "aria-hidden": "true",
    };
    for (const [name, value] of Object.entries(attrs)) svg.setAttribute(name, value);
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", pathData);
    svg.append(path);
    return svg;
  }

  function thumbButton(testId, label, pathData) {
    const button = el("button", {
      className: "icon-button thumb",
      testId,
      attrs: { type: "button", "aria-label": label, title: label, "aria-pressed": "false" },
    });
    button.append(svgIcon(pathData));
    return button;
  }

  function renderFeedback(messageId) {
    const box = el("div", { className: "feedback", testId: "feedback" });
    const buttons = el("div", { className: "feedback-buttons" });
    const up = thumbButton("thumbs-up", "Helpful", ICONS.thumbsUp);
    const down = thumbButton("thumbs-down", "Not helpful", ICONS.thumbsDown);
    buttons.append(el("span", { className: "feedback-label", text: "Was this helpful?" }));
    buttons.append(up, down);

    const form = el("form", { className: "feedback-form", testId: "feedback-form" });
    form.hidden = true;
    const reason = el("select", {
      testId: "feedback-reason",
      attrs: { "aria-label": "What was wrong? (optional)" },
    });
    if (reasonOptions) reason.append(reasonOptions.content.cloneNode(true));
    const comment = el("textarea", {
      testId: "feedback-comment",
      attrs: { rows: "2", placeholder: "What was wrong or missing? (optional)", maxlength: "2000" },
    });
    const submit = el("button", {
      className: "button",
      testId: "feedback-submit",
      text: "Submit",
      attrs: { type: "submit" },
    });
    form.append(reason, comment, submit);

    const thanks = el("p", {
      className: "feedback-thanks",
      testId: "feedback-thanks",
      text: "Thanks for your feedback",
    });
    thanks.hidden = true;

    async function send(rating, text, why) {
      up.disabled = down.disabled = submit.disabled = true;
      clearError();
      try {
        const body = { message: messageId, rating, comment: text, reason: why };
        await api("POST", urls.feedback, body);
        form.hidden = true;
        buttons.hidden = true;
        thanks.hidden = false;
      } catch (error) {
        showError(error.message);
        up.disabled = down.disabled = submit.disabled = false;
      }
    }

    up.addEventListener("click", () => {
      up.setAttribute("aria-pressed", "true");
      down.setAttribute("aria-pressed", "false");
      send(1, "", "");
    });
    down.addEventListener("click", () => {
      down.setAttribute("aria-pressed", "true");
      up.setAttribute("aria-pressed", "false");
      form.hidden = false;
      comment.focus();
      form.scrollIntoView({ block: "nearest" });
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      send(-1, comment.value.trim(), reason.value);
    });

    box.append(buttons, form, thanks);
    return box;
  }

  // --- Messages ---------------------------------------------------------------------------------

  const DECISIONS = {
    escalated: {
      label: "Escalated",
      note: "This needs a person: someone from our support team will follow up here, in this conversation.",
    },
    refused: {
      label: "No answer found",
      note: "The documents don't cover this, so no answer was made up.",
    },
  };

  function hideEmptyState() {
    ui.emptyState.hidden = true;
  }

  function appendUserMessage(text) {
    hideEmptyState();
    const node = el("div", { className: "message user", testId: "user-message" });
    node.append(el("div", { className: "bubble", text }));
    ui.messages.append(node);
    scrollToBottom();
    return node;
  }

  function appendPending() {
    const node = el("div", { className: "message assistant pending", testId: "pending-message" });
    const bubble = el("div", { className: "bubble" });
    bubble.append(el("span", { text: "Searching the documents" }));
    bubble.append(el("span", { className: "dots", attrs: { "aria-hidden": "true" } }));
    node.append(bubble);
    ui.messages.append(node);
    scrollToBottom();
    return node;
  }

  // A reviewer's answer to an escalated or rated-down one: a person wrote it, not the model.
  function renderReviewerMessage(message) {
    const node = el("div", {
      className: "message assistant from-reviewer",
      testId: "reviewer-message",
    });
    const bubble = el("div", { className: "bubble" });
    const header = el("div", { className: "decision" });
    header.append(
      el("span", {
        className: "badge reviewer",
        testId: "reviewer-badge",
        text: "Answered by a support person",
      }),
    );
    bubble.append(header, renderAnswerText(message.text || "", []));
    node.append(bubble);
    return node;
  }

  // message: {id, text, decision, degraded, citations, from_reviewer}
  function renderAssistantMessage(message) {
    if (message.from_reviewer) return renderReviewerMessage(message);
    const decision = message.decision || "answered";
    const citations = (message.citations || []).map(normaliseCitation);
    const node = el("div", {
      className: `message assistant decision-${decision}`,
      testId: "assistant-message",
    });
    node.dataset.decision = decision;
    const bubble = el("div", { className: "bubble" });

    const info = DECISIONS[decision];
    if (info) {
      const header = el("div", { className: "decision" });
      header.append(
        el("span", { className: `badge ${decision}`, testId: "decision-badge", text: info.label }),
      );
      bubble.append(header);
    }
    bubble.append(renderAnswerText(message.text || "", citations));
    if (info) {
      bubble.append(
        el("p", { className: "decision-note", testId: "decision-note", text: info.note }),
      );
    }
    if (message.partial) {
      const note = el("p", {
        className: "degraded-note partial-note",
        testId: "partial-note",
        text: "The answer was cut off before it finished. ",
      });
      if (message.question) {
        const retry = el("button", {
          className: "button retry",
          testId: "retry",
          text: "Retry",
          attrs: { type: "button" },
        });
        retry.addEventListener("click", () => {
          if (state.busy) return;
          ui.input.value = message.question;
          ask();
        });
        note.append(retry);
      }
      bubble.append(note);
    } else if (message.degraded) {
      bubble.append(
        el("p", {
          className: "degraded-note",
          testId: "degraded-note",
          text: "Answered in reduced mode: the main language model was unavailable.",
        }),
      );
    }
    if (citations.length) bubble.append(renderSources(citations));
    node.append(bubble);
    // Anonymous visitors (anonymous chat) get no feedback buttons: feedback needs an account.
    if (urls.feedback && message.id !== undefined && message.id !== null) {
      node.append(renderFeedback(message.id));
    }
    return node;
  }

  function clearMessages() {
    closeCitation();
    for (const child of Array.from(ui.messages.children)) {
      if (child !== ui.emptyState) child.remove();
    }
    ui.emptyState.hidden = false;
  }

  // --- Conversations ----------------------------------------------------------------------------

  function setConversation(id) {
    state.conversationId = id;
    const url = new URL(window.location.href);
    if (id) url.searchParams.set("conversation", id);
    else url.searchParams.delete("conversation");
    window.history.replaceState(null, "", url);
    for (const item of ui.conversationList.querySelectorAll("button[data-id]")) {
      const active = item.dataset.id === id;
      item.classList.toggle("active", active);
      if (active) item.setAttribute("aria-current", "true");
      else item.removeAttribute("aria-current");
    }
  }

  async function loadConversations() {
    let conversations;
    try {
      conversations = await api("GET", urls.conversations);
    } catch (error) {
      showError(error.message);
      return;
    }
    const items = Array.isArray(conversations) ? conversations : conversations.results || [];
    ui.conversationList.replaceChildren();
    for (const conversation of items) {
      const item = el("li");
      const button = el("button", {
        className: "conversation",
        testId: "conversation-item",
        attrs: { type: "button" },
      });
      button.dataset.id = conversation.id;
      button.title = conversation.title || "Untitled";
      button.append(
        el("span", { className: "conversation-title", text: conversation.title || "Untitled" }),
        el("span", { className: "conversation-date", text: formatDate(conversation.updated_at) }),
      );
      button.addEventListener("click", () => openConversation(conversation.id));
      item.append(button);
      ui.conversationList.append(item);
    }
    ui.conversationEmpty.hidden = items.length > 0;
    setConversation(state.conversationId);
  }

  async function openConversation(id) {
    if (state.busy) return;
    clearError();
    let conversation;
    try {
      conversation = await api("GET", `${urls.conversations}/${encodeURIComponent(id)}`);
    } catch (error) {
      showError(error.message);
      return;
    }
    clearMessages();
    setConversation(conversation.id);
    for (const message of conversation.messages || []) {
      if (message.role === "user") appendUserMessage(message.text);
      else ui.messages.append(renderAssistantMessage(message));
    }
    if ((conversation.messages || []).length) hideEmptyState();
    scrollToBottom();
    ui.input.focus();
  }

  function newConversation() {
    if (state.busy) return;
    clearError();
    clearMessages();
    setConversation(null);
    ui.input.value = "";
    updateComposer();
    ui.input.focus();
  }

  // --- Asking -----------------------------------------------------------------------------------

  function setBusy(busy) {
    state.busy = busy;
    ui.send.disabled = busy;
    ui.input.readOnly = busy;
    root.classList.toggle("busy", busy);
  }

  // Reads a Server-Sent Events body, calling onEvent(name, data) for each event.
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) onEvent(name, JSON.parse(data));
      }
    }
  }

  // POST the question asking for a stream; a JSON body (an error, or a server without
  // streaming) is handled like before. Returns the final answer, or throws an ApiError whose
  // `partial` holds any text already shown.
  async function askStreaming(question, pending) {
    let response;
    try {
      response = await fetch(urls.ask, {
        method: "POST",
        headers: {
          Accept: "text/event-stream",
          "Content-Type": "application/json",
          "X-CSRFToken": csrfToken(),
        },
        credentials: "same-origin",
        body: JSON.stringify({ question, conversation: state.conversationId, stream: true }),
      });
    } catch (networkError) {
      throw new ApiError(GENERIC_ERROR, "network_error");
    }
    const type = response.headers.get("Content-Type") || "";
    if (!response.ok || !type.startsWith("text/event-stream")) {
      let data = null;
      try {
        data = await response.json();
      } catch (parseError) {
        data = null;
      }
      if (response.ok && data) return data;
      const error = data && data.error;
      if (response.status === 401 || response.status === 403) {
        throw new ApiError("Your session has ended. Please reload the page and sign in.", "auth");
      }
      throw new ApiError(error && error.message ? error.message : GENERIC_ERROR, error && error.code);
    }
    let text = "";
    let citations = [];
    let final = null;
    let failure = null;
    let live = null;
    try {
      await readEvents(response, (name, data) => {
        if (name === "delta") {
          text += data.text;
          citations = citations.concat(data.citations || []);
          const node = renderAssistantMessage({ text, citations, decision: "answered" });
          node.dataset.streaming = "true";
          (live || pending).replaceWith(node);
          live = node;
          scrollToBottom();
        } else if (name === "done") {
          final = data;
        } else if (name === "error") {
          failure = data;
        }
      });
    } catch (streamError) {
      failure = { message: GENERIC_ERROR };
    }
    if (final) {
      if (live) live.replaceWith(pending);
      return final;
    }
    const error = new ApiError((failure && failure.message) || GENERIC_ERROR, "stream_failed");
    error.partial = text ? { text, citations, live } : null;
    throw error;
  }

  async function ask() {
    const question = ui.input.value.trim();
    if (!question || state.busy) return;
    clearError();
    setBusy(true);
    const userNode = appendUserMessage(question);
    const pending = appendPending();
    ui.input.value = "";
    updateComposer();
    try {
      const result = await askStreaming(question, pending);
      pending.replaceWith(
        renderAssistantMessage({
          id: result.message,
          text: result.answer,
          decision: result.decision,
          degraded: result.degraded,
          partial: result.partial,
          question,
          citations: result.citations,
        }),
      );
      scrollToBottom();
      setConversation(result.conversation);
      loadConversations(); // a new conversation appears, an old one moves to the top
    } catch (error) {
      if (error.partial) {
        // The connection broke mid-answer: keep what was shown, say so, offer a retry.
        error.partial.live.replaceWith(
          renderAssistantMessage({ ...error.partial, partial: true, question }),
        );
        showError("The connection broke before the answer finished.");
      } else {
        // Give the question back so it can be shortened or sent again.
        pending.remove();
        userNode.remove();
        if (!ui.messages.querySelector(".message")) ui.emptyState.hidden = false;
        ui.input.value = question;
        updateComposer();
        showError(error.message);
      }
    } finally {
      setBusy(false);
      ui.input.focus();
    }
  }

  function updateComposer() {
    // Grow the box with its content, up to the CSS max-height.
    ui.input.style.height = "auto";
    ui.input.style.height = `${ui.input.scrollHeight}px`;
    const length = ui.input.value.length;
    if (maxQuestionChars && length > maxQuestionChars * 0.8) {
      ui.charCount.hidden = false;
      ui.charCount.textContent = `${length} / ${maxQuestionChars}`;
      ui.charCount.classList.toggle("over", length > maxQuestionChars);
    } else {
      ui.charCount.hidden = true;
    }
  }

  // --- Wiring -----------------------------------------------------------------------------------

  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    ask();
  });
  ui.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ask();
    }
  });
  ui.input.addEventListener("input", updateComposer);
  ui.newConversation.addEventListener("click", newConversation);
  ui.errorDismiss.addEventListener("click", clearError);
  ui.panelClose.addEventListener("click", () => closeCitation(true));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !ui.panel.hidden) closeCitation(true);
  });

  const initial = new URL(window.location.href).searchParams.get("conversation");
  loadConversations();
  if (initial) openConversation(initial);
  ui.input.focus();
  // Handlers are bound: tests (and anything else driving the page) wait for this mark.
  document.getElementById("chat").dataset.ready = "true";
})();
