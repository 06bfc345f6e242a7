/** A small typed event emitter: `on` returns the function that removes the handler. */
export class Emitter<Events extends object> {
    #handlers = new Map<keyof Events, Set<(payload: never) => void>>();

    on<K extends keyof Events>(name: K, handler: (payload: Events[K]) => void): () => void {
        let set = this.#handlers.get(name);
        if (!set) {
            set = new Set();
            this.#handlers.set(name, set);
        }
        set.add(handler as (payload: never) => void);
        return () => set.delete(handler as (payload: never) => void);
    }

    /** Calls every handler of `name`; a handler that throws does not stop the others. */
    protected emit<K extends keyof Events>(name: K, payload: Events[K]): void {
        const set = this.#handlers.get(name);
        if (!set) return;
        for (const handler of [...set]) {
            try {
                (handler as (payload: Events[K]) => void)(payload);
            } catch (error) {
                // An application's handler failing is the application's bug; it
                // must not break delivery to the other handlers or the client.
                queueMicrotask(() => {
                    throw error;
                });
            }
        }
    }
}
