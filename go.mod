module github.com/kvtrack/kvtrack

go 1.26
