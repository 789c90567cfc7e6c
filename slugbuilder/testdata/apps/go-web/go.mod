module example.com/goweb

go 1.26

toolchain go1.26.8

require github.com/google/uuid v1.6.0
