/**
 * Where a webhook may go: the public internet only, unless the server runs with
 * `WEBHOOK_ALLOW_PRIVATE=true`. An address is public when `ipaddr.js` classes it `unicast`: every
 * IANA special-purpose block is refused (private, loopback, link-local, shared 100.64/10,
 * documentation and benchmarking ranges, 192.0.0/24, multicast, 240/4, 64:ff9b::/96 and the other
 * IPv4-translated forms, discard 100::/64, unique-local, 6to4 and Teredo), an IPv4-mapped IPv6
 * address as its IPv4 address, and so is every address of this host's own interfaces. The check
 * runs on the URL when an endpoint is registered and on the address actually connected to.
 */
import { networkInterfaces } from 'node:os';
import ipaddr from 'ipaddr.js';

/** Why `address` is not a public destination, or `null` when it is one (`address`: an IP literal). */
export function refusedAddress(address: string): string | null {
  const bare = address.replace(/^\[|\]$/g, '');
  if (!ipaddr.isValid(bare)) return null;
  const parsed = ipaddr.process(bare);
  const range = parsed.range();
  if (range !== 'unicast') return `${bare} is not a public address (${range})`;
  const own = Object.values(networkInterfaces())
    .flat()
    .some((i) => i !== undefined && ipaddr.process(i.address).toString() === parsed.toString());
  return own ? `${bare} is an address of this host` : null;
}

/** Why a webhook URL is refused whatever its address (credentials, scheme), or `null`. */
export function refusedUrl(url: URL): string | null {
  if (url.username !== '' || url.password !== '')
    return 'a webhook URL may not carry credentials (user:password@): sign deliveries with the secret instead';
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'a webhook URL must be http or https';
  return null;
}

/** A URL as it may be shown: without any credentials it carries. */
export function shownUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.username === '' && url.password === '') return text;
    url.username = '';
    url.password = '';
    return url.toString();
  } catch {
    return text;
  }
}
