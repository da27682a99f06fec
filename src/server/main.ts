/** `npm start` and `node dist/bundle/server.js` (this module bundled, `scripts/build.js`): the server, as `deriver-live start` runs it. */
import { serve } from '../cli/serve.ts';

await serve(process.argv.slice(2));
