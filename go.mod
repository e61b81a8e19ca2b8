module github.com/kvtrack/kvtrack

go 1.26

require (
	github.com/dlclark/regexp2 v1.12.0
	golang.org/x/text v0.35.0
)
