package kvevents

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// splitEndpoint splits a ZMQ endpoint into the part before its port and the
// port, for tcp endpoints; other transports return port -1.
func splitEndpoint(ep string) (base string, port int, err error) {
	scheme, rest, ok := strings.Cut(ep, "://")
	if !ok || rest == "" {
		return "", 0, fmt.Errorf("not a ZMQ endpoint (want tcp://host:port, ipc://path or inproc://name)")
	}
	switch scheme {
	case "ipc", "inproc":
		return ep, -1, nil
	case "tcp":
	default:
		return "", 0, fmt.Errorf("transport %q: valid transports are tcp, ipc and inproc", scheme)
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("tcp endpoint has no port")
	}
	port, err = strconv.Atoi(rest[i+1:])
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("tcp port %q is not a port number", rest[i+1:])
	}
	return ep[:len(scheme)+3+i], port, nil
}

// RankEndpoint returns the endpoint data-parallel rank rank of an engine
// uses, given rank 0's, as vLLM's offset_endpoint_port does: tcp ports are
// offset by the rank, inproc names get the suffix _dp<rank>, and other
// transports have no endpoint for ranks above 0.
func RankEndpoint(endpoint string, rank int) (string, error) {
	base, port, err := splitEndpoint(endpoint)
	if err != nil {
		return "", fmt.Errorf("kvevents: endpoint %q: %w", endpoint, err)
	}
	if rank == 0 {
		return endpoint, nil
	}
	if rank < 0 {
		return "", fmt.Errorf("kvevents: negative data-parallel rank %d", rank)
	}
	switch {
	case port >= 0:
		if port+rank > 65535 {
			return "", fmt.Errorf("kvevents: endpoint %q offset by rank %d exceeds port 65535", endpoint, rank)
		}
		return base + ":" + strconv.Itoa(port+rank), nil
	case strings.HasPrefix(endpoint, "inproc://"):
		return endpoint + "_dp" + strconv.Itoa(rank), nil
	}
	return "", fmt.Errorf("kvevents: endpoint %q cannot be offset for data-parallel rank %d (only tcp and inproc can)", endpoint, rank)
}

// PodFromEndpoint returns the host:port a connect-mode endpoint names, the
// pod identity the listen command uses when it is given only endpoints.
func PodFromEndpoint(endpoint string) (string, error) {
	_, rest, ok := strings.Cut(endpoint, "://")
	if !ok || rest == "" {
		return "", fmt.Errorf("kvevents: endpoint %q is not a ZMQ endpoint", endpoint)
	}
	return rest, nil
}

// podFromTopic returns the pod address in a topic of the form
// <prefix>@<pod-address>@<model>: kv@10.0.0.7:8000@Qwen/Qwen3-8B, or
// kv@10.0.0.7@Qwen/Qwen3-8B as llm-d's guide sets it (kv@${POD_IP}@model,
// without a port; see the package documentation for how such a topic is
// matched to a pod). The model may itself contain '@'.
func podFromTopic(topic []byte) ([]byte, bool) {
	_, rest, ok := bytes.Cut(topic, []byte("@"))
	if !ok {
		return nil, false
	}
	addr, _, ok := bytes.Cut(rest, []byte("@"))
	if !ok || len(addr) == 0 {
		return nil, false
	}
	return addr, true
}

// replayEndpointFor builds tcp://<host of addr>:<port> for bind mode.
func replayEndpointFor(addr string, port int) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	return "tcp://" + net.JoinHostPort(host, strconv.Itoa(port))
}
