// Package kubernetes holds Kubernetes manifests for running kvtrack's EPP
// in front of a vLLM pool (see README.md), and the test that keeps the
// EPP's configuration and the vLLM flags in agreement. It has no Go API.
package kubernetes
