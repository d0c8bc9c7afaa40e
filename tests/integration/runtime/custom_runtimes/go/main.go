// A Lambda function for kubelambda's custom-runtime tests (tests/integration/runtime), built
// against aws-lambda-go and run as a provided.al2023 function's bootstrap. The event's "action"
// picks what an invocation does; KUBELAMBDA_TEST_EXIT_AT_INIT makes it exit before it asks for
// its first invocation.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Action  string `json:"action"`
	SleepMs int    `json:"sleepMs"`
	Say     string `json:"say"`
}

// Counted per process: a second invocation of one environment sees 2.
var calls = 0

func handle(ctx context.Context, e event) (map[string]any, error) {
	calls++
	if e.Say != "" {
		fmt.Println(e.Say)
		fmt.Fprintln(os.Stderr, e.Say+" (on stderr)")
	}
	switch e.Action {
	case "error":
		return nil, errors.New("the function failed on purpose")
	case "sleep":
		time.Sleep(time.Duration(e.SleepMs) * time.Millisecond)
	case "exit":
		os.Exit(3)
	}
	lc, _ := lambdacontext.FromContext(ctx)
	deadline, _ := ctx.Deadline()
	trace, _ := ctx.Value("x-amzn-trace-id").(string)
	variables := map[string]string{}
	for _, name := range []string{
		"_HANDLER", "LAMBDA_TASK_ROOT", "AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_FUNCTION_NAME",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_REGION",
		"AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_EXECUTION_ENV",
		"MY_SETTING",
	} {
		if value, ok := os.LookupEnv(name); ok {
			variables[name] = value
		}
	}
	cwd, _ := os.Getwd()
	return map[string]any{
		"event":        e,
		"requestId":    lc.AwsRequestID,
		"functionArn":  lc.InvokedFunctionArn,
		"deadlineMs":   deadline.UnixMilli(),
		"traceId":      trace,
		"identityId":   lc.Identity.CognitoIdentityID,
		"identityPool": lc.Identity.CognitoIdentityPoolID,
		"clientCustom": lc.ClientContext.Custom,
		"functionName": lambdacontext.FunctionName,
		"memoryMB":     lambdacontext.MemoryLimitInMB,
		"pid":          os.Getpid(),
		"calls":        calls,
		"cwd":          cwd,
		"env":          variables,
	}, nil
}

func main() {
	if os.Getenv("KUBELAMBDA_TEST_EXIT_AT_INIT") != "" {
		fmt.Println("init: exiting on purpose")
		os.Exit(2)
	}
	lambda.Start(handle)
}
