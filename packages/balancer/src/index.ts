export { createPolicy, type PolicyName, policyNames, UnknownPolicyError } from './create-policy.js';
export { HealthPenalty, type HealthPenaltyOptions } from './passive-health.js';
export type * from './types.js';
