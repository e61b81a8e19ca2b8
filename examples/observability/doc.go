// Package observability holds kvtrack's monitoring assets: a Grafana
// dashboard, PrometheusRule alerts and a ServiceMonitor for the EPP. Its
// test checks that they parse and that every metric they name is one
// kvtrack exports.
package observability
