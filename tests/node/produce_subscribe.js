// A Node.js client built from the .proto files with @grpc/grpc-js: subscribe, produce, read back.
// Usage: node produce_subscribe.js HOST:PORT PROTO_ROOT TOPIC
"use strict";
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [address, protoRoot, topic] = process.argv.slice(2);
const definition = protoLoader.loadSync(["tidelog/v1/admin.proto", "tidelog/v1/broker.proto"], {
  includeDirs: [protoRoot],
  longs: String,
  defaults: true,
  oneofs: true,
});
const v1 = grpc.loadPackageDefinition(definition).tidelog.v1;
const admin = new v1.Admin(address, grpc.credentials.createInsecure());
const broker = new v1.Broker(address, grpc.credentials.createInsecure());

function fail(message) {
  console.error(message);
  process.exit(1);
}

const deadline = setTimeout(() => fail("timed out"), 20000);

admin.CreateTopic({ name: topic, partitions: 1 }, (err) => {
  if (err) return fail(`CreateTopic: ${err.message}`);
  const received = [];
  const stream = broker.Subscribe({ topic, partition: 0, position: "POSITION_EARLIEST" });
  let live = false;
  stream.on("data", (response) => {
    if (!live) {
      live = true;
      const records = [1, 2, 3].map((i) => ({ key: Buffer.from(`k${i}`), value: Buffer.from(`node-${i}`) }));
      broker.Produce({ topic, partition: 0, records }, (perr, answer) => {
        if (perr) return fail(`Produce: ${perr.message}`);
        if (answer.results[0].recordCount !== 3) fail(`unexpected answer ${JSON.stringify(answer)}`);
      });
    }
    for (const batch of response.batches) {
      batch.records.forEach((record, i) => {
        received.push({ offset: Number(batch.baseOffset) + i, value: record.value.toString() });
      });
    }
    if (received.length >= 3) {
      clearTimeout(deadline);
      console.log(JSON.stringify(received));
      stream.cancel();
      process.exit(0);
    }
  });
  stream.on("error", (serr) => {
    if (serr.code !== grpc.status.CANCELLED) fail(`Subscribe: ${serr.message}`);
  });
});
