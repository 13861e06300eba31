// Redis key layout. Every key starts with the configured prefix. The keys of one backend share
// the hash tag {<backend>}, so a script touching both lands on one Redis Cluster slot, and
// different backends spread over the cluster.

export interface BackendKeys {
  /** HASH node id -> connections that node holds on the backend. */
  readonly counts: string;
  /** ZSET node id -> lease expiry (ms, Redis clock). */
  readonly nodes: string;
  /**
   * Pub/sub channel of this backend's releases (JSON {b: backend, n: node id or '', t: total}); it
   * carries the hash tag, so on a Redis Cluster SPUBLISH keeps it on the keys' shard.
   */
  readonly released: string;
}

export class RedisKeys {
  constructor(readonly prefix: string) {}

  backend(backendId: string): BackendKeys {
    // A "}" would end the hash tag early and split the pair over two slots; backend ids are
    // host:port, so this only guards against odd ids.
    const tag = backendId.replaceAll('}', '%7D');
    const at = `${this.prefix}:{${tag}}`;
    return { counts: `${at}:counts`, nodes: `${at}:nodes`, released: `${at}:released` };
  }

  /** ZSET node id -> liveness expiry: how many nodes run (for the local share without Redis). */
  get liveNodes(): string {
    return `${this.prefix}:{nodes}:live`;
  }
}
