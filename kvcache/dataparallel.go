package kvcache

import (
	"net"
	"strconv"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// DPEndpoints says how the endpoints requests are routed to relate to the
// data-parallel ranks of an engine.
type DPEndpoints string

// The data-parallel deployment shapes.
const (
	// DPShared: one endpoint per engine, in front of all its ranks; vLLM's
	// internal load balancer picks the rank. An endpoint scores the mean
	// of its ranks' results, because that balancer (DPLBAsyncMPClient)
	// picks the rank with the fewest waiting and running requests and does
	// not look at the cache: a request can expect the average rank's hit.
	DPShared DPEndpoints = "shared"
	// DPPerRank: every rank has an endpoint of its own (vLLM's external or
	// hybrid load balancing: rank r's API server listens on apiPort + r).
	// An endpoint scores exactly its rank's blocks.
	DPPerRank DPEndpoints = "perRank"
)

// DataParallelConfig says how the endpoints requests are routed to map to
// the data-parallel ranks of engines run with vLLM data parallelism; the
// number of ranks is events.dataParallelSize. Each rank is an engine with
// its own KV cache and event stream; events name their rank and are indexed
// per (pod, rank), where the pod is the address the events name (the topic
// in bind mode, the added pod in connect mode): rank 0's endpoint.
//
// The zero value is the shared shape.
type DataParallelConfig struct {
	// Endpoints is "shared" (default) or "perRank"; see DPEndpoints.
	Endpoints DPEndpoints `json:"endpoints,omitempty"`
	// APIPort, required with perRank, is the port of rank 0's API server:
	// an endpoint host:port with APIPort <= port < APIPort+ranks is rank
	// port-APIPort of the engine whose events name host:APIPort. Endpoints
	// on other ports are rank 0 of an engine of their own.
	APIPort int `json:"apiPort,omitempty"`

	// size is events.dataParallelSize, set by Config.WithDefaults.
	size int
}

func (c *DataParallelConfig) setDefaults(ranks int) {
	c.size = max(ranks, 1)
	if c.Endpoints == "" {
		c.Endpoints = DPShared
	}
}

func (c DataParallelConfig) validate(bad func(field, format string, args ...any)) {
	switch c.Endpoints {
	case DPShared:
	case DPPerRank:
		if c.APIPort < 1 || c.APIPort+c.size-1 > 65535 {
			bad("dataParallel.apiPort", "%d out of range (valid with endpoints %q: the port of rank 0's API server, 1 to %d)",
				c.APIPort, DPPerRank, 65536-c.size)
		}
	default:
		bad("dataParallel.endpoints", "%q invalid (valid: %q, %q)", c.Endpoints, DPShared, DPPerRank)
	}
}

// ranksPerEndpoint is how many (pod, rank) engines one endpoint's score
// averages.
func (c DataParallelConfig) ranksPerEndpoint() int {
	if c.Endpoints == DPShared && c.size > 1 {
		return c.size
	}
	return 1
}

// appendEngines appends the (pod, rank) engines whose blocks decide
// endpoint's score: ranksPerEndpoint of them.
func (c DataParallelConfig) appendEngines(dst []kvblock.Pod, endpoint string) []kvblock.Pod {
	switch {
	case c.size <= 1:
		return append(dst, kvblock.Pod{Addr: endpoint})
	case c.Endpoints == DPShared:
		for r := range c.size {
			dst = append(dst, kvblock.Pod{Addr: endpoint, Rank: r})
		}
		return dst
	}
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return append(dst, kvblock.Pod{Addr: endpoint})
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < c.APIPort || p >= c.APIPort+c.size {
		return append(dst, kvblock.Pod{Addr: endpoint})
	}
	return append(dst, kvblock.Pod{Addr: net.JoinHostPort(host, strconv.Itoa(c.APIPort)), Rank: p - c.APIPort})
}

// enginePod returns the pod whose events carry endpoint's blocks (the
// address of rank 0's API server) and endpoint's rank. In the shared shape,
// and for an endpoint outside [APIPort, APIPort+ranks), it is endpoint
// itself, rank 0.
func (c DataParallelConfig) enginePod(endpoint string) (string, int) {
	if c.Endpoints != DPPerRank {
		return endpoint, 0
	}
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return endpoint, 0
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < c.APIPort || p >= c.APIPort+c.size {
		return endpoint, 0
	}
	return net.JoinHostPort(host, strconv.Itoa(c.APIPort)), p - c.APIPort
}
