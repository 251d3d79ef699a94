// What the page currently holds, shared by the modules (one object, no copies).
export const state = {
  conversations: [], // the list as shown (search results when a query is set)
  convOffset: 0,
  convQuery: '',
  // the open conversation: {id, title, settings, messages: [{role, content}]}
  current: null,
  streaming: null, // AbortController of the running generation
};

export const MODES = ['auto', 'chat', 'code', 'react', 'plan-execute'];
export const MODE_SUFFIX = { auto: '', chat: ':chat', code: ':code', react: ':react', 'plan-execute': ':plan-execute' };
export const KNOWN_SUFFIXES = [':chat', ':code', ':react', ':plan-execute'];
