// A real OpenID Connect provider (oidc-provider) for switchboard's tests,
// started and stopped by harness/src/oidc.rs. It owns one loopback HTTP
// server whose issuer is http://127.0.0.1:PORT and which answers:
//
// - the provider's own routes: discovery (/.well-known/openid-configuration),
//   the JWKS at the discovery document's jwks_uri, and POST /token with the
//   client-credentials grant, which returns a JWT access token for the
//   requested resource indicator (its `aud`);
// - two harness routes (test support, not OpenID Connect):
//   PUT /harness/clients/<client_id>  {"secret", "claims", "ttl", "kid"}
//     registers (or replaces) a client: its id is the token's `sub`, its
//     claims are added to every token it gets, `ttl` is their lifetime in s,
//     `kid` the key that signs them (the signer when absent);
//   PUT /harness/keys  {"keys": [{"kid", "alg", "pem"}], "signer": kid}
//     replaces the key set (each a PKCS#8 PEM file) and the signing key.
//
// oidc-provider's keystore is fixed when a Provider is built, so a key change
// builds a new Provider on the same issuer and swaps it in: the port, the
// issuer, the JWKS URL and the registered clients stay; requests already in
// flight finish on the old one.
//
// Usage: node provider.mjs '{"port": 0, "keys": [...], "signer": "kid"}'
// Prints `ISSUER http://127.0.0.1:PORT` on stdout once it answers.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(process.argv[2] ?? '{}');

/** client_id -> { secret, claims, ttl, kid } */
const clients = new Map();

/** The key set the current Provider was built with, and its signer's kid. */
let keys = [];
let signer;

/** The current Provider's request handler. */
let handler;

let issuer;

// Everything oidc-provider would keep in its memory adapter, except clients,
// which come from `clients` (never evicted). JWT access tokens are not stored.
const stored = new Map();

class HarnessAdapter {
  constructor(model) {
    this.model = model;
  }

  async find(id) {
    if (this.model === 'Client') {
      const client = clients.get(id);
      return client && {
        client_id: id,
        client_secret: client.secret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      };
    }
    return stored.get(`${this.model}:${id}`);
  }

  async upsert(id, payload) {
    stored.set(`${this.model}:${id}`, payload);
  }

  async destroy(id) {
    stored.delete(`${this.model}:${id}`);
  }

  async consume(id) {
    const payload = stored.get(`${this.model}:${id}`);
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async findByUid() {
    return undefined;
  }

  async findByUserCode() {
    return undefined;
  }

  async revokeByGrantId() {}
}

/** A private JWK of a key file, with its kid, alg and use. */
function privateJwk({ kid, alg, pem }) {
  const jwk = crypto.createPrivateKey(fs.readFileSync(pem)).export({ format: 'jwk' });
  return { ...jwk, kid, alg, use: 'sig' };
}

const SIGNING_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'EdDSA'];

function build(newKeys, newSigner) {
  const signing = newKeys.find((k) => k.kid === newSigner);
  if (!signing) throw new Error(`signer ${newSigner} is not one of the keys`);
  const provider = new Provider(issuer, {
    adapter: HarnessAdapter,
    jwks: { keys: newKeys.map(privateJwk) },
    // Only the client-credentials grant: no interactions, no cookies used.
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => undefined,
        useGrantedResource: async () => false,
        // Any absolute URI is a resource server: the token's `aud`.
        getResourceServerInfo: async (ctx, resource, client) => {
          const registered = clients.get(client.clientId);
          const key = newKeys.find((k) => k.kid === registered?.kid) ?? signing;
          return {
            scope: '',
            audience: resource,
            accessTokenFormat: 'jwt',
            accessTokenTTL: registered?.ttl ?? 600,
            jwt: { sign: { alg: key.alg, kid: key.kid } },
          };
        },
      },
    },
    extraTokenClaims: async (ctx, token) => clients.get(token.clientId)?.claims,
    ttl: {
      ClientCredentials: (ctx, token, client) => clients.get(client.clientId)?.ttl ?? 600,
    },
    clientBasedCORS: () => false,
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    enabledJWA: { idTokenSigningAlgValues: SIGNING_ALGS },
    clientDefaults: {
      grant_types: ['client_credentials'],
      response_types: [],
      id_token_signed_response_alg: signing.alg,
    },
  });
  keys = newKeys;
  signer = newSigner;
  handler = provider.callback();
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
      } catch (err) {
        reject(err);
      }
    });
    req.on('error', reject);
  });
}

async function harnessRoute(req, res) {
  const body = await readBody(req);
  const clientPrefix = '/harness/clients/';
  if (req.method === 'PUT' && req.url.startsWith(clientPrefix)) {
    const id = decodeURIComponent(req.url.slice(clientPrefix.length));
    if (!id || typeof body.secret !== 'string') throw new Error('a client needs an id and a secret');
    const ttl = body.ttl ?? 600;
    if (!Number.isSafeInteger(ttl) || ttl <= 0) throw new Error('ttl must be a positive integer (s)');
    if (body.kid !== undefined && !keys.some((k) => k.kid === body.kid)) {
      throw new Error(`kid ${body.kid} is not one of the keys`);
    }
    clients.set(id, {
      secret: body.secret, claims: body.claims ?? {}, ttl, kid: body.kid,
    });
  } else if (req.method === 'PUT' && req.url === '/harness/keys') {
    build(body.keys, body.signer);
  } else if (req.method === 'GET' && req.url === '/harness/keys') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys, signer }));
    return;
  } else {
    res.writeHead(404);
    res.end();
    return;
  }
  res.writeHead(204);
  res.end();
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/harness/')) {
    harnessRoute(req, res).catch((err) => {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(String(err?.message ?? err));
    });
  } else {
    handler(req, res);
  }
});

server.listen(config.port ?? 0, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  build(config.keys ?? [], config.signer);
  process.stdout.write(`ISSUER ${issuer}\n`);
});

// Stopped by the harness (SIGKILL of the process group), or by its parent
// closing stdin, whichever comes first.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
