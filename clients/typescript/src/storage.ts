/**
 * Where a client keeps each subscription's last delivered `seq` (and the
 * stream epoch it belongs to), so that a page reload or a process restart
 * resumes where the application was.
 */
export interface CursorStorage {
    get(key: string): string | null | undefined | Promise<string | null | undefined>;
    set(key: string, value: string): void | Promise<void>;
}

/** What is stored under the client's key. */
export interface SavedCursors {
    /** The stream epoch the seqs belong to. */
    epoch?: string;
    /** The last delivered `seq` per channel. */
    seqs: Record<string, number>;
}

/**
 * What `webStorage` uses of a Web Storage object (`localStorage`,
 * `sessionStorage`), declared here so that an application compiled
 * without the DOM's types (a Node app) can use the client's types.
 */
export interface WebStorageLike {
    getItem(key: string): string | null;
    setItem(key: string, value: string): void;
}

/** `localStorage` (or `sessionStorage`) as a cursor storage, in browsers. */
export function webStorage(storage: WebStorageLike = globalThis.localStorage): CursorStorage {
    return {
        get: (key) => storage.getItem(key),
        set: (key, value) => storage.setItem(key, value),
    };
}

/** A storage in memory: handy in tests, or to share cursors between clients of one process. */
export function memoryStorage(): CursorStorage & { readonly entries: Map<string, string> } {
    const entries = new Map<string, string>();
    return {
        entries,
        get: (key) => entries.get(key),
        set: (key, value) => void entries.set(key, value),
    };
}

export function parseSaved(text: string | null | undefined): SavedCursors {
    if (!text) return { seqs: {} };
    try {
        const value: unknown = JSON.parse(text);
        if (typeof value !== "object" || value === null) return { seqs: {} };
        const { epoch, seqs } = value as { epoch?: unknown; seqs?: unknown };
        const saved: SavedCursors = { seqs: {} };
        if (typeof epoch === "string") saved.epoch = epoch;
        if (typeof seqs === "object" && seqs !== null) {
            for (const [channel, seq] of Object.entries(seqs)) {
                if (Number.isSafeInteger(seq) && (seq as number) >= 0) saved.seqs[channel] = seq as number;
            }
        }
        return saved;
    } catch {
        // A corrupt entry is no resume point: the subscriptions start afresh.
        return { seqs: {} };
    }
}
