#!/bin/bash
# TLS only: BASE vs NEW broker binaries, max-rate-1p-1kb and fixed-rate-16p-1kb, 3 rounds
# alternating; perf stat counts CPU 1 (the broker)'s send/recv system calls. Run from the repo.
cd /work/main
certs=/work/perf-data/vec/certs; mkdir -p $certs
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -keyout $certs/ca.key -out $certs/ca.pem -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $certs/server.key -out $certs/server.csr -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > $certs/ext
openssl x509 -req -in $certs/server.csr -CA $certs/ca.pem -CAkey $certs/ca.key -CAcreateserial -days 2 -extfile $certs/ext -out $certs/server.pem 2>/dev/null
for r in 1 2 3; do
  for b in base vec; do
    bin=${BASE:-/work/scratch/broker-new}; [ $b = vec ] && bin=${NEW:-/work/scratch/broker-vec}
    for w in max-rate-1p-1kb fixed-rate-16p-1kb; do
      out=${OUT:-/work/perf-data/vec2}/$b/$w-$r; mkdir -p $out
      BROKER_TLS_CERT=$certs/server.pem BROKER_TLS_KEY=$certs/server.key \
        target/release/bench-harness run bench-harness/workloads/$w.toml --spawn --server-bin $bin \
        --spawn-dir /work/perf-data --shards 1 --server-cpus 1 --client-cpus 0 --duration 10 --warmup 3 \
        --no-progress --tls-ca $certs/ca.pem --out $out > $out/out.txt 2>&1 &
      h=$!
      sleep 5
      perf stat -C 1 -e 'syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvfrom' -- sleep 6 2> $out/perf.txt
      wait $h
    done
  done
done
echo ALLDONE
