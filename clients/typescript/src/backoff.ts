/**
 * The wait before reconnect attempt `attempt` (0 for the first after a
 * connection was up): the server's base delay (`hello.reconnect_ms`) plus
 * full jitter over a window that doubles with each failed attempt, up to
 * `maxMs`. The jitter spreads a crowd of clients that lost the same node
 * over the window instead of bringing them back in the same second.
 */
export function reconnectDelay(baseMs: number, attempt: number, maxMs: number, random: () => number = Math.random): number {
    const floor = Math.max(baseMs, 0);
    const window = Math.min(maxMs, Math.max(floor, 100) * 2 ** Math.min(attempt, 30));
    return Math.round(Math.min(maxMs, floor + random() * window));
}
