/**
 * Importing this module turns the code cache on (./code-cache.ts). An entry
 * point imports it first, so that the CommonJS files its other imports load
 * compile through the cache: ES modules evaluate their imports in order.
 */
import { enableCodeCache } from './code-cache.js';

enableCodeCache();
