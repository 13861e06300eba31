export { createPolicy, type PolicyName, policyNames, UnknownPolicyError } from './create-policy.js';
export {
  type EjectionReason,
  type OutlierDecision,
  type OutlierDetectionOptions,
  OutlierDetector,
  type OutlierState,
} from './outlier-detection.js';
export { HealthPenalty, type HealthPenaltyOptions } from './passive-health.js';
export type * from './types.js';
