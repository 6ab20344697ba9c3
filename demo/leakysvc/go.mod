module gotrace.dev/leakysvc

go 1.21
