module github.com/credbroker/credbroker

go 1.26
