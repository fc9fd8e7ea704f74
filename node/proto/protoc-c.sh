#!/bin/sh
# Runs protoc-c for one .proto, then renames the one identifier it generates that clashes with
# a C keyword: AuthService's "Register" method becomes a struct member named `register` in the
# protobuf-c RPC stubs (which Generia does not use; the gRPC path stays
# /generia.auth.v1.AuthService/Register).
# Usage: protoc-c.sh PROTOC_C PROTO_DIR OUT_DIR FILE.proto
set -eu
protoc_c=$1 proto_dir=$2 out_dir=$3 file=$4
"$protoc_c" "-I$proto_dir" "--c_out=$out_dir" "$file"
base=$(basename "$file" .proto)
sed -i -e 's/(\*register)(/(*register_)(/' "$out_dir/$base.pb-c.h"
