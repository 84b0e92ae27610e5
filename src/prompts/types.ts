/** A named list of token sequences, ready for the forward pass. */
export interface PromptSet {
  name: string;
  /** One Int32Array of token ids per sequence (sequences may differ in length). */
  sequences: Int32Array[];
}
