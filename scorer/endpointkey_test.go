package scorer

import (
	"testing"

	fwkdl "sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/datalayer"
)

// TestEndpointKey checks that endpoints are named as kvevents and vLLM's
// topics name pods: host and port joined, IPv6 in brackets.
func TestEndpointKey(t *testing.T) {
	tests := []struct {
		addr, port, want string
	}{
		{"10.0.0.7", "8000", "10.0.0.7:8000"},
		{"fd00::5", "8000", "[fd00::5]:8000"},
		{"::1", "8000", "[::1]:8000"},
	}
	for _, tt := range tests {
		if got := EndpointKey(&fwkdl.EndpointMetadata{Address: tt.addr, Port: tt.port}); got != tt.want {
			t.Errorf("EndpointKey(%q, %q) = %q, want %q", tt.addr, tt.port, got, tt.want)
		}
	}
	if got := EndpointKey(nil); got != "" {
		t.Errorf("EndpointKey(nil) = %q, want \"\"", got)
	}
}
