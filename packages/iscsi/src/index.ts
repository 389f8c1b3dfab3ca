export * from './target/placeholder-target.js';
