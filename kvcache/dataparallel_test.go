package kvcache

import "testing"

func TestPerRankEndpointsMapToTheirEngine(t *testing.T) {
	c := DataParallelConfig{Endpoints: DPPerRank, APIPort: 8000}
	c.setDefaults(2)
	for _, tt := range []struct {
		endpoint string
		engine   string
		rank     int
	}{
		{"10.0.0.7:8000", "10.0.0.7:8000", 0},
		{"10.0.0.7:8001", "10.0.0.7:8000", 1},
		{"10.0.0.7:8002", "10.0.0.7:8002", 0}, // beyond the ranks: an engine of its own
		{"[fd00::5]:8001", "[fd00::5]:8000", 1},
		{"not-an-endpoint", "not-an-endpoint", 0},
	} {
		engine, rank := c.enginePod(tt.endpoint)
		if engine != tt.engine || rank != tt.rank {
			t.Errorf("enginePod(%q) = %q, %d; want %q, %d", tt.endpoint, engine, rank, tt.engine, tt.rank)
		}
	}
	shared := DataParallelConfig{}
	shared.setDefaults(2)
	if engine, rank := shared.enginePod("10.0.0.7:8001"); engine != "10.0.0.7:8001" || rank != 0 {
		t.Errorf("shared: enginePod = %q, %d; want the endpoint itself, rank 0", engine, rank)
	}
}
