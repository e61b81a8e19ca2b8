// Package doctor checks a live vLLM deployment against a kvtrack
// configuration and says, per pod and data-parallel rank, whether precise
// prefix routing can work and, when it cannot, which setting to change.
//
// Run subscribes to every pod's KV-event stream for a bounded time and
// checks that events flow, which vLLM layout (and so which version range)
// they use, their sequence numbers and gaps, the replay endpoint, the media
// and block sizes, and the topic against the router's filter. It re-hashes
// every BlockStored that starts at the root and carries token_ids with the
// configured algorithm, seed and block size, and names the setting that
// differs when the hashes do not match. With Options.Probe it sends one
// completion and one chat request to each pod and compares the hashes the
// pod publishes for them with the keys kvtrack computes through its own
// tokenizer and chat template, blaming the tokenizer, the template or the
// hashing.
//
// Results are data (Report, Check), rendered by WriteText or encoding/json.
// Run never waits longer than its Duration plus the probe and replay
// timeouts: a ZMQ connect never fails, so an unreachable pod shows up as
// "no events", which the report explains. Run is safe to call
// concurrently; a Report is a plain value.
package doctor
