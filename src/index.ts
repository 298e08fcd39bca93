// camviz library API. (Filled in as the modules land.)
export { CamvizError, UsageError } from './errors.js';
