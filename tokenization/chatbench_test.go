package tokenization

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// processCPU is the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchChat builds a chat of n messages (a system message, then user and
// assistant turns) whose contents total about chars characters of the
// committed corpus.
func benchChat(b *testing.B, n, chars int) *ChatRequest {
	b.Helper()
	text := strings.Join(benchPrompts(b), "")
	per := chars / n
	msgs := make([]map[string]string, n)
	for i := range msgs {
		role := "user"
		switch {
		case i == 0:
			role = "system"
		case i%2 == 0:
			role = "assistant"
		}
		start := (i * per) % (len(text) - per)
		msgs[i] = map[string]string{"role": role, "content": strings.ToValidUTF8(text[start:start+per], "")}
	}
	raw, err := json.Marshal(msgs)
	if err != nil {
		b.Fatal(err)
	}
	return &ChatRequest{Messages: raw, AddGenerationPrompt: true}
}

// BenchmarkRenderChat renders a 50-message, 32k-character chat with real
// models' templates, cold: every iteration parses the request's JSON,
// applies vLLM's preprocessing and runs the template (no cache). With the
// key cache warm, scoring does not render at all (Pool and the scorer's
// key cache answer first); this is the price of a new conversation.
func BenchmarkRenderChat(b *testing.B) {
	req := benchChat(b, 50, 32<<10)
	for _, model := range []string{"qwen3", "llama3_1", "gemma3", "deepseek_v3"} {
		b.Run(fmt.Sprintf("%s/messages=50/chars=32k", model), func(b *testing.B) {
			l := loadLocal(b, model)
			out, err := l.RenderChat(req)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(out)))
			b.ReportAllocs()
			cpu0 := processCPU()
			b.ResetTimer()
			for range b.N {
				if _, err := l.RenderChat(req); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/render")
			// CPU time is steadier than wall time on a shared machine.
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/render")
		})
	}
}
