// Command epp is a Gateway API Inference Extension Endpoint Picker (v1.5.0)
// with kvtrack's precise-prefix-cache-scorer built in.
//
// It is the stock EPP: the only addition is scorer.Register() before the
// runner starts, which makes the plugin type available to the
// EndpointPickerConfig given with --config-file or --config-text (see
// epp-config.yaml next to this file). Build it into an image in place of
// the upstream EPP:
//
//	go build -o epp ./examples/epp
//	./epp --pool-name my-pool --config-file examples/epp/epp-config.yaml ...
package main

import (
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/gateway-api-inference-extension/cmd/epp/runner"

	"github.com/kvtrack/kvtrack/scorer"
)

func main() {
	scorer.Register()
	if err := runner.NewRunner().WithExecutableName("kvtrack-epp").Run(ctrl.SetupSignalHandler()); err != nil {
		os.Exit(1)
	}
}
