package scorer

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"reflect"
	"sync/atomic"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	fwkdl "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/datalayer"
	fwkplugin "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/plugin"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/requestcontrol"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/scheduling"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvevents"
)

// PreciseScorerType is the plugin type the scorer is registered under.
const PreciseScorerType = "precise-prefix-cache-scorer"

// Compile-time checks of the extension points the scorer implements.
var (
	_ scheduling.Scorer         = (*Scorer)(nil)
	_ fwkdl.EndpointExtractor   = (*Scorer)(nil)
	_ requestcontrol.PreRequest = (*Scorer)(nil)
)

// Option configures the factory Register installs.
type Option func(*factoryOptions)

type factoryOptions struct {
	reg      prometheus.Registerer
	kvcOpts  []kvcache.Option
	noMetric bool
}

// WithRegisterer registers each scorer's metrics on reg instead of the
// controller-runtime registry the EPP serves on /metrics. Each scorer's
// metrics carry a plugin="<name>" label.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *factoryOptions) { o.reg = reg }
}

// WithIndexerOptions passes options to kvcache.New for every scorer the
// factory builds (a custom index or tokenizer, say).
func WithIndexerOptions(opts ...kvcache.Option) Option {
	return func(o *factoryOptions) { o.kvcOpts = append(o.kvcOpts, opts...) }
}

// Register adds the precise-prefix-cache-scorer type to the EPP's plugin
// registry. Call it before the EPP runner starts (the registry is a plain
// map the runner reads without a lock).
func Register(opts ...Option) {
	fwkplugin.Register(PreciseScorerType, NewFactory(opts...))
}

// Factory builds a Scorer from its EndpointPickerConfig parameters, with the
// default options. It has the FactoryFunc signature.
func Factory(name string, parameters json.RawMessage, handle fwkplugin.Handle) (fwkplugin.Plugin, error) {
	return NewFactory()(name, parameters, handle)
}

// NewFactory returns a FactoryFunc with opts applied. The parameters are a
// kvcache.Config in JSON; unknown fields are an error naming them. The
// scorer's Indexer runs until handle.Context() is done.
func NewFactory(opts ...Option) fwkplugin.FactoryFunc {
	var o factoryOptions
	for _, opt := range opts {
		opt(&o)
	}
	return func(name string, parameters json.RawMessage, handle fwkplugin.Handle) (fwkplugin.Plugin, error) {
		if name == "" {
			name = PreciseScorerType
		}
		cfg, llmdWarnings, err := parseAnyParameters(parameters)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", PreciseScorerType, name, err)
		}
		ctx := context.Background()
		if handle != nil && handle.Context() != nil {
			ctx = handle.Context()
		}
		log := logr.FromContextOrDiscard(ctx).WithName(PreciseScorerType).WithValues("plugin", name)
		for _, w := range llmdWarnings { // llm-d's schema: settings kvtrack maps differently
			log.Info("llm-d parameter without a kvtrack equivalent", "setting", w.Setting, "warning", w.Message)
		}
		reg := o.reg
		if reg == nil {
			reg = crmetrics.Registry
		}
		kopts := append([]kvcache.Option{
			kvcache.WithLogger(log),
			kvcache.WithRegisterer(prometheus.WrapRegistererWith(prometheus.Labels{"plugin": name}, reg)),
		}, o.kvcOpts...)
		kopts = append([]kvcache.Option{kvcache.WithEventSource(kvevents.Source)}, kopts...)
		ix, err := kvcache.New(cfg, kopts...)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", PreciseScorerType, name, err)
		}
		// Start binds the event endpoint now: a conflict or a bad endpoint
		// fails the EPP's startup instead of leaving a healthy-looking EPP
		// whose scores are all 0.
		if err := ix.Start(ctx); err != nil {
			_ = ix.Close()
			return nil, fmt.Errorf("%s %q: %w", PreciseScorerType, name, err)
		}
		context.AfterFunc(ctx, func() {
			if err := ix.Close(); err != nil {
				log.Error(err, "closing the indexer")
			}
		})
		go func() {
			select {
			case <-ctx.Done():
			case <-ix.Done():
				if err := ix.Err(); err != nil {
					log.Error(err, "KV-event subscription stopped; scores fall back to 0 until the EPP restarts")
				}
			}
		}()
		return newScorer(name, ix, log, ctx), nil
	}
}

// ParseParameters decodes the plugin's parameters into a kvcache.Config
// with kvcache.ParseConfig (strict: an unknown field is an error naming its
// path), applies the defaults and validates. Empty parameters give the
// defaults (which need at least hash.seed for the vllm key scheme).
func ParseParameters(parameters json.RawMessage) (kvcache.Config, error) {
	cfg, err := kvcache.ParseConfig(parameters)
	if err != nil {
		return kvcache.Config{}, fmt.Errorf("parameters: %w", err)
	}
	return cfg, nil
}

// Scorer scores endpoints by the fraction of the request's prompt, in KV
// blocks from the start, that each endpoint's engine holds in its prefix
// cache, as its KV events report. It is also the data layer's
// EndpointExtractor (following pods as they join and leave the pool) and a
// PreRequest hook (recording the routing decision speculatively).
//
// A Scorer is safe for concurrent use.
type Scorer struct {
	typedName fwkplugin.TypedName
	ix        *kvcache.Indexer
	log       logr.Logger
	state     *fwkplugin.PluginState

	// extracting is set once the data layer has delivered an endpoint
	// event; until then Score follows the candidates it sees, so that a
	// configuration that does not wire the extractor still subscribes.
	extracting atomic.Bool
}

func newScorer(name string, ix *kvcache.Indexer, log logr.Logger, ctx context.Context) *Scorer {
	return &Scorer{
		typedName: fwkplugin.TypedName{Type: PreciseScorerType, Name: name},
		ix:        ix,
		log:       log,
		state:     fwkplugin.NewPluginState(ctx),
	}
}

// New returns a Scorer named name over an Indexer the caller built and runs.
// The EPP builds scorers through the factory instead.
func New(ctx context.Context, name string, ix *kvcache.Indexer) *Scorer {
	return newScorer(name, ix, logr.FromContextOrDiscard(ctx), ctx)
}

// TypedName implements plugin.Plugin.
func (s *Scorer) TypedName() fwkplugin.TypedName { return s.typedName }

// WithName sets the plugin's name.
func (s *Scorer) WithName(name string) *Scorer {
	s.typedName.Name = name
	return s
}

// Indexer returns the scorer's Indexer.
func (s *Scorer) Indexer() *kvcache.Indexer { return s.ix }

// Category implements scheduling.Scorer: a prefix-cache hit pulls requests
// to where their state is.
func (s *Scorer) Category() scheduling.ScorerCategory { return scheduling.Affinity }

// keysState carries a request's block keys from Score to PreRequest
// (batch: each prompt's keys, see kvcache.Result.Batch), and how many of
// them vLLM looks up (kvcache.Result.Blocks, per prompt BatchBlocks:
// whether the prompt ends at a block boundary, which decides how its
// speculative entry is confirmed).
type keysState struct {
	keys        []kvblock.Key
	batch       [][]kvblock.Key
	blocks      int
	batchBlocks []int
}

func (k *keysState) Clone() fwkplugin.StateData {
	c := &keysState{keys: append([]kvblock.Key(nil), k.keys...), blocks: k.blocks, batchBlocks: append([]int(nil), k.batchBlocks...)}
	for _, b := range k.batch {
		c.batch = append(c.batch, append([]kvblock.Key(nil), b...))
	}
	return c
}

const keysStateKey fwkplugin.StateKey = PreciseScorerType + "/keys"

// Score implements scheduling.Scorer. Every endpoint gets matched/total in
// [0, 1]; endpoints without data, and all of them when the request cannot
// be scored, get 0.
func (s *Scorer) Score(ctx context.Context, _ *scheduling.CycleState, request *scheduling.LLMRequest, endpoints []scheduling.Endpoint) map[scheduling.Endpoint]float64 {
	scores := make(map[scheduling.Endpoint]float64, len(endpoints))
	for _, ep := range endpoints {
		scores[ep] = 0
	}
	if request == nil || len(endpoints) == 0 {
		return scores
	}
	req, ok := s.toRequest(request)
	if !ok {
		return scores
	}
	req.Pods = make([]string, len(endpoints))
	for i, ep := range endpoints {
		req.Pods[i] = EndpointKey(ep.GetMetadata())
	}
	if !s.extracting.Load() {
		for _, p := range req.Pods {
			if err := s.ix.AddPod(ctx, p); err != nil && s.log.V(1).Enabled() {
				s.log.V(1).Info("following candidate", "pod", p, "error", err.Error())
			}
		}
	}
	res, err := s.ix.Score(ctx, req)
	if err != nil {
		s.log.Error(err, "scoring failed; every endpoint scores 0", "requestID", request.RequestId)
		return scores
	}
	for i, ep := range endpoints {
		scores[ep] = res.Pods[i].Score
	}
	if s.ix.Config().Speculative.Enabled && request.RequestId != "" && len(res.Keys) > 0 {
		s.state.Write(request.RequestId, keysStateKey, &keysState{keys: res.Keys, batch: res.Batch, blocks: res.Blocks, batchBlocks: res.BatchBlocks})
	}
	if s.log.V(2).Enabled() {
		s.log.V(2).Info("scored", "requestID", request.RequestId, "blocks", res.Blocks, "pods", res.Pods)
	}
	return scores
}

// EndpointKey is the pod name kvtrack uses for an endpoint: "address:port"
// ("[v6]:port" for IPv6), the inference endpoint requests are sent to. vLLM
// must publish its events with the same name in the topic
// (kv@<address:port>@<model>), or with the address alone when no other
// endpoint shares it, for the bind mode to match them.
func EndpointKey(m *fwkdl.EndpointMetadata) string {
	if m == nil {
		return ""
	}
	return net.JoinHostPort(m.Address, m.Port)
}

// PreRequest implements requestcontrol.PreRequest: with speculative
// recording enabled, the blocks of the request just routed are recorded on
// the chosen endpoint (and on the prefill endpoint of a disaggregated
// decision) for a short TTL.
func (s *Scorer) PreRequest(ctx context.Context, request *scheduling.LLMRequest, result *scheduling.SchedulingResult) {
	if request == nil || request.RequestId == "" || !s.ix.Config().Speculative.Enabled {
		return
	}
	st, err := fwkplugin.ReadPluginStateKey[*keysState](s.state, request.RequestId, keysStateKey)
	s.state.Delete(request.RequestId)
	if err != nil || result == nil {
		return
	}
	for name, pr := range result.ProfileResults {
		if name != result.PrimaryProfileName && name != "prefill" {
			continue
		}
		if pr == nil || len(pr.TargetEndpoints) == 0 {
			continue
		}
		pod := EndpointKey(pr.TargetEndpoints[0].GetMetadata())
		if err := s.ix.SpeculateResult(ctx, pod, kvcache.Result{Keys: st.keys, Batch: st.batch, Blocks: st.blocks, BatchBlocks: st.batchBlocks}); err != nil {
			s.log.Error(err, "speculative record", "pod", pod)
		}
	}
}

// ExpectedInputType implements datalayer.Extractor: the scorer consumes
// endpoint lifecycle events.
func (s *Scorer) ExpectedInputType() reflect.Type { return fwkdl.EndpointEventReflectType }

// Extract implements datalayer.Extractor for sources that deliver endpoint
// events through the generic path.
func (s *Scorer) Extract(ctx context.Context, data any, _ fwkdl.Endpoint) error {
	ev, ok := data.(fwkdl.EndpointEvent)
	if !ok {
		return fmt.Errorf("%s: unexpected input %T (want datalayer.EndpointEvent)", PreciseScorerType, data)
	}
	return s.ExtractEndpoint(ctx, ev)
}

// ExtractEndpoint implements datalayer.EndpointExtractor: an endpoint that
// joins the pool is followed (in connect mode its event publisher is
// dialled), one that leaves is dropped together with every block it held.
func (s *Scorer) ExtractEndpoint(ctx context.Context, ev fwkdl.EndpointEvent) error {
	s.extracting.Store(true)
	if ev.Endpoint == nil {
		return nil
	}
	pod := EndpointKey(ev.Endpoint.GetMetadata())
	if pod == ":" || pod == "" {
		return nil
	}
	switch ev.Type {
	case fwkdl.EventAddOrUpdate:
		return s.ix.AddPod(ctx, pod)
	case fwkdl.EventDelete:
		return s.ix.RemovePod(ctx, pod)
	default:
		return nil
	}
}
