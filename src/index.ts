/**
 * The headsweep library: everything `pipeline/` and outside code may call, listed by
 * name so the public surface is a deliberate choice, grouped in the order data flows
 * (checkpoint → backend → forward pass → prompts → metrics → scoring → classification).
 */
export { HeadsweepError, messageOf, type ErrorDetails, type Stage } from './errors.ts';

export {
  checkpointDigest, closeCheckpoint, inspectCheckpoint, loadCheckpoint, weightBlock, weightOf,
  type Checkpoint, type CheckpointInfo, type LoadOptions, type Weights,
} from './checkpoint/checkpoint.ts';
export {
  openSource, type ContainerName, type FileRole, type Source, type SourceFile, type SourceOptions, type SourceTensor,
} from './checkpoint/source.ts';
export { FAMILY_NAMES, type FamilyName } from './checkpoint/families/family.ts';
export { BACKEND_MEMORY_LIMITS, backendFit, type BackendFit } from './checkpoint/memory.ts';
export { ReadBuffer, type HostTensor } from './checkpoint/read.ts';
export { FLOAT_DTYPES, type DType } from './checkpoint/dtypes.ts';
export {
  ACT_FNS, MODEL_CONFIG_FIELDS, NORMALIZATION_TYPES, POSITIONAL_EMBEDDING_TYPES, TlConfigSchema, expectedShapes, expectedTensors, kvHeads,
  modelConfig, parameterCount, parseModelConfig, type ActFn, type ModelConfig, type NormalizationType, type PositionalEmbeddingType,
  type TensorSpec, type TlConfig,
} from './model/config.ts';
export {
  readTensor, withSafetensors, writeSafetensors,
  type SafetensorsHeader, type TensorInfo, type TensorToWrite, type WriteDType,
} from './checkpoint/containers/safetensors.ts';

export { BACKENDS, initBackend, tf, type BackendChoice, type BackendName } from './backend.ts';

export {
  disposeParams, forward, tokenLosses, uploadParams, type ForwardOptions, type ForwardOutput, type Params,
} from './model/forward.ts';

export {
  PromptSetSpecSchema, REPEATED_RANDOM_DEFAULTS, RepeatedRandomSpecSchema, TokensFileSpecSchema,
  buildPromptSet, readTokensFile, repeatedRandom, validatePromptSet,
  type BuildOptions, type PromptOrigin, type PromptSet, type PromptSetSpec, type RepeatedRandomSpec, type TokensFileSpec,
} from './prompts/index.ts';

export { buildMask, type MarkRow, type PatternMask, type PatternMaskFn } from './metrics/mask.ts';
export { maskedHeadSums } from './metrics/pattern.ts';
export { prefixMatchingMask } from './metrics/specs/prefix-matching.ts';
export { duplicateTokenMask } from './metrics/specs/duplicate-token.ts';
export { previousTokenMask } from './metrics/specs/previous-token.ts';
export { firstTokenMask } from './metrics/specs/first-token.ts';
export { checkIclPositions, type IclPositions } from './metrics/loss.ts';
export { copyingScores } from './metrics/copying.ts';
export { compositionScores } from './metrics/composition.ts';
export { bigramKl } from './metrics/bigram-kl.ts';
export { bigramEntropy, countBigrams, type Bigrams } from './metrics/bigrams.ts';
export {
  METRICS, headScores, metricSpec, metricsOfKind,
  type HeadWeightsMetric, type MetricKind, type MetricOfKind, type MetricPer, type MetricSpec, type MetricWhere, type PatternMetricName,
} from './metrics/registry.ts';
export { defineMetric, type ColumnSpec, type ColumnType } from './metrics/spec.ts';

export {
  METRIC_NAMES, scoreCheckpoint,
  type CheckpointScores, type CompositionKind, type CompositionScores, type MetricName, type PromptSetScores, type ScoreOptions,
} from './score.ts';

export {
  COMPARISONS, ConditionSchema, DEFAULT_RULES, HEAD_METRICS, RuleSchema, RulesSchema, classifyHead, labelHeads,
  type Comparison, type Condition, type HeadMetric, type Rule,
} from './classify.ts';
