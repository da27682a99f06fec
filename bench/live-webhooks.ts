/**
 * Webhooks in `npm run bench:live`: from the commit that drains a unit to the receiver (one unit at a
 * time), and events per second when 1,000 units drain at once.
 */
import { createServer } from 'node:http';
import { addMessages, command, gql, now } from './live-client.ts';
import { percentile, report, round } from './util.ts';

/** Webhook latency (commit to receiver) and throughput. */
export async function webhookDelivery() {
  await command({ op: 'mode', mode: { kind: 'noop' } });
  /** Receipt time of each event, and its commit time (the body's timestamp, the store's clock). */
  const arrivals: { receivedAt: number; committedAt: number }[] = [];
  let onArrival: () => void = () => {};
  const hooks = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const receivedAt = now();
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { timestamp: string };
      arrivals.push({ receivedAt, committedAt: Date.parse(body.timestamp) });
      response.writeHead(200).end();
      onArrival();
    });
  });
  await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', resolve));
  const hookUrl = `http://127.0.0.1:${(hooks.address() as { port: number }).port}/`;
  await gql('mutation($w:ID!){upsertWorkspace(id:$w,settings:{summariesEnabled:false}){id}}', { w: 'hooks' });
  await gql(
    'mutation($u:String!){createWebhook(workspaceId:"hooks",url:$u,events:[QUEUE_EMPTY],secret:"bench-secret-0123456789"){id}}',
    { u: hookUrl },
  );
  const arrived = (n: number) =>
    new Promise<void>((resolve) => {
      onArrival = () => {
        if (arrivals.length >= n) resolve();
      };
      onArrival();
    });
  // Latency: one unit drains at a time.
  const ROUNDS = 60;
  for (let r = 0; r < ROUNDS; r++) {
    await gql('mutation($s:ID!){upsertSession(workspaceId:"hooks",id:$s,peers:[{peerId:"a"}]){id}}', {
      s: `h${r}`,
    });
    await addMessages('hooks', `h${r}`, 1);
    await arrived(r + 1);
  }
  const latencies = arrivals.map((a) => a.receivedAt - a.committedAt).sort((a, b) => a - b);
  const webhookP99Ms = round(percentile(latencies, 99), 1);
  // Throughput: 1,000 units drain as fast as the scheduler runs them.
  const BURST = 1_000;
  const before = arrivals.length;
  await command({ op: 'mode', mode: { kind: 'block' } });
  for (let i = 0; i < BURST; i++) {
    await gql('mutation($s:ID!){upsertSession(workspaceId:"hooks",id:$s,peers:[{peerId:"a"}]){id}}', {
      s: `b${i}`,
    });
    await addMessages('hooks', `b${i}`, 1);
  }
  const burstStart = now();
  await command({ op: 'mode', mode: { kind: 'noop' } });
  await arrived(before + BURST);
  const webhookEventsPerSecond = Math.round(BURST / ((now() - burstStart) / 1000));
  hooks.close();
  report({
    bench: 'live',
    phase: 'webhooks',
    rounds: ROUNDS,
    latency: { p50Ms: round(percentile(latencies, 50), 1), p99Ms: webhookP99Ms },
    burst: BURST,
    webhookEventsPerSecond,
  });
  return { webhookP99Ms, webhookEventsPerSecond };
}
