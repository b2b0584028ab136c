// A Node.js @grpc/grpc-js client in a cluster: GetMetadata names each partition's leader; a produce
// sent to another broker answers NOT_LEADER with the leader's address in the google.rpc.Status
// details (an ErrorInfo), and the same produce sent there is written.
// Usage: node cluster_routing.js BOOTSTRAP_HOST:PORT PROTO_ROOT TOPIC
"use strict";
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const [bootstrap, protoRoot, topic] = process.argv.slice(2);
const definition = protoLoader.loadSync(["tidelog/v1/broker.proto"], {
  includeDirs: [protoRoot],
  longs: String,
  defaults: true,
});
const v1 = grpc.loadPackageDefinition(definition).tidelog.v1;

// google.rpc.Status and ErrorInfo: the two messages of the error model a client reads.
const rpc = protobuf.Root.fromJSON({
  nested: {
    Any: { fields: { type_url: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } } },
    Status: {
      fields: {
        code: { type: "int32", id: 1 },
        message: { type: "string", id: 2 },
        details: { rule: "repeated", type: "Any", id: 3 },
      },
    },
    ErrorInfo: {
      fields: {
        reason: { type: "string", id: 1 },
        domain: { type: "string", id: 2 },
        metadata: { keyType: "string", type: "string", id: 3 },
      },
    },
  },
});

function fail(message) {
  console.error(message);
  process.exit(1);
}

function errorInfo(err) {
  const raw = err.metadata.get("grpc-status-details-bin")[0];
  if (!raw) fail(`no status details on ${err.message}`);
  const status = rpc.lookupType("Status").decode(raw);
  const any = status.details.find((d) => d.type_url.endsWith("google.rpc.ErrorInfo"));
  return rpc.lookupType("ErrorInfo").decode(any.value);
}

setTimeout(() => fail("timed out"), 20000);
const client = (address) => new v1.Broker(address, grpc.credentials.createInsecure());

client(bootstrap).GetMetadata({ topics: [topic] }, (err, metadata) => {
  if (err) return fail(`GetMetadata: ${err.message}`);
  const brokers = Object.fromEntries(metadata.brokers.map((b) => [b.id, b.address]));
  const partition = metadata.topics[0].partitions[0];
  const other = metadata.brokers.find((b) => b.id !== partition.leader);
  const request = { topic, partition: 0, records: [{ value: Buffer.from("from-node") }] };
  client(other.address).Produce(request, (perr) => {
    if (!perr) return fail("a broker that does not lead the partition took the produce");
    const info = errorInfo(perr);
    const leaderAddress = info.metadata.leader_address;
    if (leaderAddress !== brokers[partition.leader]) fail(`NOT_LEADER named ${leaderAddress}`);
    client(leaderAddress).Produce(request, (lerr, answer) => {
      if (lerr) return fail(`Produce on the leader: ${lerr.message}`);
      console.log(
        JSON.stringify({
          code: perr.code,
          reason: info.reason,
          leader: Number(info.metadata.leader_id),
          metadata_leader: partition.leader,
          isr: partition.isr,
          offset: Number(answer.results[0].baseOffset),
          durable_on: answer.results[0].durableOn,
        }),
      );
      process.exit(0);
    });
  });
});
