export * from './capture-backend.js';
