import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type ConsulHealthEntry, nextIndex, toBackends } from '../src/index.js';

const entry = (
  id: string,
  service: NonNullable<ConsulHealthEntry['Service']>,
  nodeAddress = '10.0.0.9',
): ConsulHealthEntry => ({
  Node: { Node: 'n1', Address: nodeAddress },
  Service: { ID: id, Service: 'mta', ...service },
});

test('health entries become backends: weight, cap, options, node address fallback, sorted by id', () => {
  const problems: Parameters<typeof toBackends>[2] = [];
  const got = toBackends(
    [
      entry('b', { Address: '', Port: 2525, Weights: { Passing: 3, Warning: 1 } }),
      entry('a', {
        Address: '10.0.0.1',
        Port: 25,
        Meta: {
          'smtp-lb-max-connections': '40',
          'smtp-lb-xclient': 'off',
          'smtp-lb-proxy-protocol': 'v2',
          'smtp-lb-tls': 'required',
        },
      }),
    ],
    100,
    problems,
  );
  assert.deepEqual(got, [
    {
      id: '10.0.0.1:25',
      host: '10.0.0.1',
      port: 25,
      weight: 1,
      maxConnections: 40,
      xclient: 'off',
      proxyProtocol: 'v2',
      tls: 'required',
    },
    { id: '10.0.0.9:2525', host: '10.0.0.9', port: 2525, weight: 3, maxConnections: 100 },
  ]);
  assert.deepEqual(problems, []);
});

test('bad meta values are ignored one by one and reported; duplicates and port-less instances are dropped', () => {
  const problems: Parameters<typeof toBackends>[2] = [];
  const got = toBackends(
    [
      entry('a', {
        Address: '10.0.0.1',
        Port: 25,
        Meta: { 'smtp-lb-max-connections': '-3', 'smtp-lb-xclient': 'yes', 'smtp-lb-tls': 'none' },
      }),
      entry('a-again', { Address: '10.0.0.1', Port: 25 }),
      entry('c', { Address: '10.0.0.3', Port: 0 }),
      entry('d', { Address: '10.0.0.4', Port: 25, Meta: { 'smtp-lb-max-connections': '12abc' } }),
    ],
    100,
    problems,
  );
  assert.deepEqual(got, [
    { id: '10.0.0.1:25', host: '10.0.0.1', port: 25, weight: 1, maxConnections: 100, tls: 'none' },
    { id: '10.0.0.4:25', host: '10.0.0.4', port: 25, weight: 1, maxConnections: 100 },
  ]);
  assert.deepEqual(
    problems.map((p) => `${p.serviceId} ${p.key}=${p.value}`),
    [
      'a smtp-lb-max-connections=-3',
      'a smtp-lb-xclient=yes',
      'a-again Address/Port=10.0.0.1:25',
      'c Address/Port=10.0.0.3:0',
      'd smtp-lb-max-connections=12abc',
    ],
  );
});

test('blocking-query index rules: backwards starts over, zero or missing becomes 1', () => {
  assert.equal(nextIndex(0, 42), 42);
  assert.equal(nextIndex(42, 42), 42);
  assert.equal(nextIndex(42, 57), 57);
  assert.equal(nextIndex(42, 7), 0);
  assert.equal(nextIndex(42, 0), 1);
  assert.equal(nextIndex(0, Number.NaN), 1);
});
