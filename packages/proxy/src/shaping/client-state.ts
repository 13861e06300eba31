// What shaping knows about one client session: its address (the PROXY header's, when a trusted
// balancer sent one), whether it is allow-listed, its counted session slot and its tarpit place.
// Released once, when the client's connection closes.
import type { ClientSlot } from '@smtp-lb/ledger';
import { clientPrefix } from './cidr.js';
import type { TarpitTicket } from './tarpit.js';

export class ClientState {
  readonly address: string;
  readonly prefix: string;
  readonly allowed: boolean;
  slot: ClientSlot | undefined;
  ticket: TarpitTicket | undefined;
  /** The tarpit delay is applied by the socket wrapper (set at admission) rather than by the hooks. */
  wrapped = false;
  #released = false;

  constructor(address: string, allowed: boolean) {
    this.address = address;
    this.prefix = clientPrefix(address);
    this.allowed = allowed;
  }

  get tarpitted(): boolean {
    return this.ticket !== undefined;
  }

  /** The session's counted slot; given back at once when the connection closed meanwhile. */
  hold(slot: ClientSlot): void {
    if (this.#released) slot.release();
    else this.slot = slot;
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.slot?.release();
    this.ticket?.leave();
  }
}
