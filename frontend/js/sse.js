// Reads a text/event-stream body: "data: {...}" lines, ":" comments (keep-alives), a blank line
// ends an event, "data: [DONE]" ends the stream. Calls onEvent(dataString) per event and resolves
// with whether [DONE] was seen.
export async function readSse(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder('utf-8');
  let buffer = '';
  let dataLines = [];
  let done = false;

  function dispatch() {
    if (!dataLines.length) return;
    const data = dataLines.join('\n');
    dataLines = [];
    if (data === '[DONE]') { done = true; return; }
    onEvent(data);
  }

  function handleLine(line) {
    if (line === '') { dispatch(); return; }
    if (line.charAt(0) === ':') return; // keep-alive comment
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charAt(0) === ' ') value = value.slice(1);
    if (field === 'data') dataLines.push(value);
  }

  for (;;) {
    const result = await reader.read();
    if (result.done) {
      buffer += decoder.decode();
      if (buffer) handleLine(buffer.replace(/\r$/, ''));
      dispatch();
      return done;
    }
    buffer += decoder.decode(result.value, { stream: true });
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (let i = 0; i < lines.length && !done; i++) handleLine(lines[i]);
    if (done) {
      reader.cancel().catch(() => {});
      return true;
    }
  }
}
