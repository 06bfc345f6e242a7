/**
 * The token refresh's timing rules, as plain functions of the token's `exp`
 * and the server's clock: when a connection's token is refreshed in band
 * (the `refresh` frame), when a failed refresh is tried again, how long an
 * answer may take, and when to give up and leave it to the reconnect path
 * (the gateway closes with 4001 at `exp`; a reconnect asks `getToken` for a
 * fresh token). No clock, no timer: the resume core calls these with the
 * times it has, and the transport sets the timers.
 *
 * The rule (docs/protocol.md's, as `switchboard tail` does it): a token is
 * refreshed a fifth of its lifetime before its `exp`, at most `marginMs`
 * (60 s) and at least {@link REFRESH_MIN_LEAD_MS} (1 s) before; the
 * lifetime is what it has left when it becomes the connection's (at `hello`
 * or `refreshed`). A failed attempt (`getToken` threw, the gateway refused the
 * token, no answer in time) is tried again after a third of the time left,
 * up to {@link REFRESH_ATTEMPTS} attempts per token.
 */

/** How long before its `exp` a token is refreshed, when `refreshMarginMs` is not given. */
export const REFRESH_MARGIN_MS = 60_000;
/** The share of its lifetime before its `exp` at which a token is refreshed, within the margin. */
export const REFRESH_SHARE = 0.2;
/** The least time before `exp` at which a refresh is due, whatever the margin: an answer needs a round trip. */
export const REFRESH_MIN_LEAD_MS = 1_000;
/** Attempts to refresh one token before the client leaves it to expire (4001) and reconnects. */
export const REFRESH_ATTEMPTS = 3;
/** The longest wait for `refreshed` before the attempt counts as failed; never more than half the time left. */
export const REFRESH_ANSWER_MS = 10_000;
/** With less time than this left, no attempt is started: the 4001 and a reconnect come sooner than an answer would. */
export const REFRESH_MIN_LEFT_MS = 100;

/**
 * The `exp` claim of a JWT, in milliseconds since the epoch, read without
 * verifying the token (the gateway verifies it); `undefined` when `token`
 * is not a JWT with a numeric `exp`.
 */
export function tokenExpiry(token: string): number | undefined {
    const payload = token.split(".")[1];
    if (!payload) return undefined;
    try {
        const base64 = payload.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(payload.length / 4) * 4, "=");
        const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
        const claims: unknown = JSON.parse(new TextDecoder().decode(bytes));
        const exp = typeof claims === "object" && claims !== null ? (claims as { exp?: unknown }).exp : undefined;
        return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : undefined;
    } catch {
        return undefined;
    }
}

/**
 * When (server time, ms) a token expiring at `expMs`, the connection's
 * since `nowMs`, is due for its refresh: `exp` minus a fifth of its
 * lifetime, at most `marginMs` and at least a second before; now when that
 * is past.
 */
export function refreshAt(expMs: number, nowMs: number, marginMs: number = REFRESH_MARGIN_MS): number {
    const lead = Math.max(REFRESH_MIN_LEAD_MS, Math.min(marginMs, (expMs - nowMs) * REFRESH_SHARE));
    return Math.max(nowMs, expMs - lead);
}

/**
 * When (server time, ms) to try again after `failures` failed attempts to
 * refresh a token expiring at `expMs`; `undefined`: give up, the 4001 at
 * `exp` and a reconnect with a fresh token will do.
 */
export function retryAt(expMs: number, nowMs: number, failures: number): number | undefined {
    const left = expMs - nowMs;
    if (failures >= REFRESH_ATTEMPTS || left < 3 * REFRESH_MIN_LEFT_MS) return undefined;
    return nowMs + left / 3;
}

/** By when (server time, ms) a refresh sent at `nowMs` must be answered, for a token expiring at `expMs`. */
export function answerBy(expMs: number, nowMs: number): number {
    return nowMs + Math.min(REFRESH_ANSWER_MS, Math.max((expMs - nowMs) / 2, REFRESH_MIN_LEFT_MS));
}
