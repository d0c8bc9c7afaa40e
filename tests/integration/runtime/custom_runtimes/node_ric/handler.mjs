// A Node.js handler run by aws-lambda-ric: echoes what reached it, or fails on request.
export const echo = async (event, context) => {
  console.log("aws-lambda-ric handler says hello");
  if (event.fail) {
    throw new Error("the handler failed on purpose");
  }
  return {
    event,
    request_id: context.awsRequestId,
    function_arn: context.invokedFunctionArn,
    remaining_ms: context.getRemainingTimeInMillis(),
  };
};
