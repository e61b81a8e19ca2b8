// Package scorer is kvtrack's plugin for the Endpoint Picker (EPP) of the
// Gateway API Inference Extension, v1.5.0: the precise-prefix-cache-scorer,
// which scores endpoints by the fraction of a request's prompt their vLLM
// engine holds in its prefix cache, as reported by the engines' KV events.
//
// A custom EPP build calls Register before starting the GIE runner and then
// names the plugin type in its EndpointPickerConfig; examples/epp has both.
// The plugin's parameters are a kvcache.Config in JSON. One Scorer value
// serves as the scheduling Scorer, as the data layer's EndpointExtractor
// (endpoints joining and leaving the pool start and stop their event
// subscriptions) and as a PreRequest hook (speculative records of routing
// decisions).
//
// This is the only kvtrack package that imports the EPP framework and,
// through it, Kubernetes client code. A Scorer is safe for concurrent use.
package scorer
