module github.com/kvtrack/kvtrack

go 1.26

require (
	github.com/fxamacker/cbor/v2 v2.9.6
	github.com/zeebo/xxh3 v1.1.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/hashicorp/golang-lru/v2 v2.0.7 // indirect
	github.com/klauspost/cpuid/v2 v2.2.10 // indirect
	github.com/pebbe/zmq4 v1.4.0 // indirect
	github.com/x448/float16 v0.8.4 // indirect
	go.yaml.in/yaml/v2 v2.4.2 // indirect
	golang.org/x/sys v0.30.0 // indirect
	sigs.k8s.io/yaml v1.6.0 // indirect
)
