// A Node.js group member through the raw Groups stubs: join, receive the assignment and records,
// commit on the stream, leave. No assignor of its own: the broker assigns.
// Usage: node group_member.js HOST:PORT PROTO_ROOT TOPIC GROUP
"use strict";
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [address, protoRoot, topic, group] = process.argv.slice(2);
const definition = protoLoader.loadSync(["tidelog/v1/broker.proto", "tidelog/v1/groups.proto"], {
  includeDirs: [protoRoot],
  longs: String,
  defaults: true,
  oneofs: true,
});
const v1 = grpc.loadPackageDefinition(definition).tidelog.v1;
const groups = new v1.Groups(address, grpc.credentials.createInsecure());

function fail(message) {
  console.error(message);
  process.exit(1);
}

const deadline = setTimeout(() => fail("timed out"), 20000);
const stream = groups.Consume();
const received = [];
let assignment = null;
let last = -1;

stream.write({ join: { group, topics: [topic], autoOffsetReset: "earliest", sessionTimeoutMs: 10000 } });
stream.on("data", (response) => {
  if (response.message === "assignment") {
    assignment = response.assignment;
  } else if (response.message === "records") {
    for (const batch of response.records.batches) {
      batch.records.forEach((record, i) => {
        last = Number(batch.baseOffset) + i;
        received.push({ partition: response.records.partition, offset: last, value: record.value.toString() });
      });
    }
    if (received.length >= 3) {
      stream.write({ commit: { offsets: [{ topic, partition: 0, offset: String(last + 1) }] } });
    }
  } else if (response.message === "commitResult") {
    const result = response.commitResult;
    if (result.error) fail(`commit refused: ${JSON.stringify(result.error)}`);
    clearTimeout(deadline);
    console.log(JSON.stringify({
      partitions: assignment.partitions.map((tp) => `${tp.topic}/${tp.partition}`),
      received,
      committed: Number(result.offsets[0].offset),
    }));
    stream.cancel();
    process.exit(0);
  }
});
stream.on("error", (err) => {
  if (err.code !== grpc.status.CANCELLED) fail(`Consume: ${err.message}`);
});
