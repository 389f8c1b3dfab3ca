export * from './opcodes.js';
export * from './fields.js';
export * from './pdu.js';
export * from './pdu-reader.js';
export * from './pdu-writer.js';
export * from './digest.js';
export * from './text.js';
