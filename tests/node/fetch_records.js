// Read a partition with Fetch through @grpc/grpc-js, from offset 0 until COUNT records: what any
// gRPC client sees of records whatever protocol produced them. Prints [{offset, key, value, headers}].
// Usage: node fetch_records.js HOST:PORT PROTO_ROOT TOPIC COUNT
"use strict";
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [address, protoRoot, topic, count] = process.argv.slice(2);
const definition = protoLoader.loadSync(["tidelog/v1/broker.proto"], {
  includeDirs: [protoRoot],
  longs: String,
  defaults: true,
  oneofs: true,
});
const v1 = grpc.loadPackageDefinition(definition).tidelog.v1;
const broker = new v1.Broker(address, grpc.credentials.createInsecure());
const deadline = setTimeout(() => {
  console.error("timed out");
  process.exit(1);
}, 20000);

const received = [];
function fetchFrom(offset) {
  broker.Fetch({ topic, partition: 0, offset, max_wait_ms: 1000 }, (err, answer) => {
    if (err) {
      console.error(`Fetch: ${err.message}`);
      process.exit(1);
    }
    let next = offset;
    for (const batch of answer.batches) {
      batch.records.forEach((record, i) => {
        const at = Number(batch.baseOffset) + i;
        if (at < next) return; // a batch served whole, from before the offset asked
        received.push({
          offset: at,
          key: record.key.toString(),
          value: record.value === null ? null : record.value.toString(),
          headers: record.headers.map((h) => [h.key, h.value.toString()]),
        });
        next = at + 1;
      });
    }
    if (received.length >= Number(count)) {
      clearTimeout(deadline);
      console.log(JSON.stringify(received));
      process.exit(0);
    }
    fetchFrom(next);
  });
}
fetchFrom(0);
