#include "common/status.h"

#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rotor {
namespace {

using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------------
// Status

TEST(StatusTest, DefaultIsOk) {
  const Status status;
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::kOk);
  EXPECT_EQ(status.message(), "");
  EXPECT_EQ(status.ToString(), "OK");
  EXPECT_TRUE(Status::OK().ok());
}

TEST(StatusTest, OkStatusIsOnePointerWide) {
  // The hot path returns ok Statuses per event; they must stay as cheap as a pointer.
  EXPECT_EQ(sizeof(Status), sizeof(void*));
}

TEST(StatusTest, EveryFactorySetsItsCodeAndFormatsTheMessage) {
  struct Case {
    Status status;
    StatusCode code;
    const char* name;
  };
  std::vector<Case> cases;
  cases.push_back(
      {Status::InvalidArgument("m{}", 1), StatusCode::kInvalidArgument, "InvalidArgument"});
  cases.push_back({Status::NotFound("m{}", 1), StatusCode::kNotFound, "NotFound"});
  cases.push_back({Status::AlreadyExists("m{}", 1), StatusCode::kAlreadyExists, "AlreadyExists"});
  cases.push_back({Status::OutOfRange("m{}", 1), StatusCode::kOutOfRange, "OutOfRange"});
  cases.push_back({Status::FailedPrecondition("m{}", 1), StatusCode::kFailedPrecondition,
                   "FailedPrecondition"});
  cases.push_back({Status::Corruption("m{}", 1), StatusCode::kCorruption, "Corruption"});
  cases.push_back({Status::IOError("m{}", 1), StatusCode::kIOError, "IOError"});
  cases.push_back({Status::Unavailable("m{}", 1), StatusCode::kUnavailable, "Unavailable"});
  cases.push_back({Status::Aborted("m{}", 1), StatusCode::kAborted, "Aborted"});
  cases.push_back({Status::Internal("m{}", 1), StatusCode::kInternal, "Internal"});
  cases.push_back(
      {Status::ResourceExhausted("m{}", 1), StatusCode::kResourceExhausted, "ResourceExhausted"});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_FALSE(c.status.ok());
    EXPECT_EQ(c.status.code(), c.code);
    EXPECT_EQ(c.status.message(), "m1");
    EXPECT_EQ(StatusCodeName(c.code), c.name);
    EXPECT_EQ(c.status.ToString(), std::string(c.name) + ": m1");
  }
}

TEST(StatusTest, FactoryFormatsSeveralArguments) {
  const Status status = Status::InvalidArgument("field '{}' is {}, want even", "d_k", 7);
  EXPECT_EQ(status.message(), "field 'd_k' is 7, want even");
}

TEST(StatusTest, RuntimeMessageGoesThroughPlaceholder) {
  const std::string from_library = "disk {full}";
  const Status status = Status::IOError("{}", from_library);
  EXPECT_EQ(status.message(), "disk {full}");
}

TEST(StatusTest, ConstructorWithOkCodeIsOkAndDropsMessage) {
  const Status status(StatusCode::kOk, "ignored");
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.message(), "");
}

TEST(StatusTest, ToStringWithEmptyMessageIsCodeName) {
  EXPECT_EQ(Status(StatusCode::kNotFound, "").ToString(), "NotFound");
}

TEST(StatusTest, UnknownCodeHasAName) {
  EXPECT_EQ(StatusCodeName(static_cast<StatusCode>(200)), "UnknownCode");
}

TEST(StatusTest, CopyDuplicatesTheError) {
  const Status original = Status::Corruption("bad crc");
  Status copy(original);
  EXPECT_EQ(copy.code(), StatusCode::kCorruption);
  EXPECT_EQ(copy.message(), "bad crc");
  copy = std::move(copy).WithContext("reading");
  EXPECT_EQ(original.message(), "bad crc");  // Independent storage.
}

TEST(StatusTest, CopyAssignmentReplacesAndSelfAssignmentKeeps) {
  Status status = Status::NotFound("user 7");
  const Status other = Status::Unavailable("broker");
  status = other;
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "broker");
  const Status& alias = status;
  status = alias;
  EXPECT_EQ(status.message(), "broker");
  status = Status::OK();
  EXPECT_TRUE(status.ok());
}

TEST(StatusTest, MoveTransfersTheErrorAndLeavesSourceOk) {
  Status source = Status::Aborted("txn");
  const Status moved(std::move(source));
  EXPECT_EQ(moved.code(), StatusCode::kAborted);
  EXPECT_TRUE(source.ok());  // NOLINT(bugprone-use-after-move): documented state.
  Status assigned;
  assigned = Status::Internal("x");
  EXPECT_EQ(assigned.code(), StatusCode::kInternal);
  static_assert(std::is_nothrow_move_constructible_v<Status>);
  static_assert(std::is_nothrow_move_assignable_v<Status>);
}

TEST(StatusTest, WithContextPrependsToTheMessage) {
  const Status status = Status::Corruption("tensor 'w' truncated").WithContext("loading bundle");
  EXPECT_EQ(status.code(), StatusCode::kCorruption);
  EXPECT_EQ(status.message(), "loading bundle: tensor 'w' truncated");
  EXPECT_EQ(Status(StatusCode::kNotFound, "").WithContext("ctx").message(), "ctx");
  EXPECT_TRUE(Status::OK().WithContext("ctx").ok());
}

TEST(StatusTest, FormatsWithFmt) {
  EXPECT_EQ(fmt::format("{}", Status::NotFound("user {}", 42)), "NotFound: user 42");
  EXPECT_EQ(fmt::format("[{}]", Status::OK()), "[OK]");
}

// ---------------------------------------------------------------------------------------------
// Result<T>

struct Base {
  virtual ~Base() = default;
  virtual int Id() const { return 1; }
};
struct Derived : Base {
  int Id() const override { return 2; }
};

struct OnlyExplicitFromInt {
  explicit OnlyExplicitFromInt(int v) : value(v) {}
  int value;
};

TEST(ResultTest, HoldsAValue) {
  Result<int> result = 7;
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result.status().ok());
  EXPECT_EQ(result.value(), 7);
  EXPECT_EQ(*result, 7);
  result.value() = 8;
  EXPECT_EQ(*result, 8);
  const Result<int>& const_ref = result;
  EXPECT_EQ(const_ref.value(), 8);
  EXPECT_EQ(*const_ref, 8);
}

TEST(ResultTest, HoldsAnError) {
  const Result<int> result = Status::NotFound("user {}", 9);
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(result.status().message(), "user 9");
}

TEST(ResultTest, RvalueStatusMovesTheErrorOut) {
  Result<int> result = Status::Unavailable("down");
  const Status status = std::move(result).status();
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(Result<int>(5).status().code(), StatusCode::kOk);
}

TEST(ResultTest, ArrowReachesMembers) {
  Result<std::string> result = "abc";  // Converting construction from const char*.
  EXPECT_EQ(result->size(), 3U);
  const Result<std::string>& const_ref = result;
  EXPECT_EQ(const_ref->front(), 'a');
}

TEST(ResultTest, MoveOnlyValueMovesOut) {
  Result<std::unique_ptr<int>> result = std::make_unique<int>(3);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(**result, 3);
  std::unique_ptr<int> taken = std::move(result).value();
  ASSERT_NE(taken, nullptr);
  EXPECT_EQ(*taken, 3);
  static_assert(!std::is_copy_constructible_v<Result<std::unique_ptr<int>>>);
  static_assert(std::is_move_constructible_v<Result<std::unique_ptr<int>>>);
}

TEST(ResultTest, MoveOnlyValueViaRvalueDereference) {
  Result<std::unique_ptr<int>> result = std::make_unique<int>(4);
  std::unique_ptr<int> taken = *std::move(result);
  EXPECT_EQ(*taken, 4);
}

TEST(ResultTest, ConvertsFromDerivedPointer) {
  const Result<std::unique_ptr<Base>> result = std::make_unique<Derived>();
  EXPECT_EQ((*result)->Id(), 2);
}

TEST(ResultTest, InPlaceConstruction) {
  const Result<std::vector<int>> result(std::in_place, 3, 1);
  EXPECT_EQ(*result, (std::vector<int>{1, 1, 1}));
}

TEST(ResultTest, ImplicitOnlyWhereTheValueConvertsImplicitly) {
  static_assert(std::is_convertible_v<int, Result<int>>);
  static_assert(std::is_convertible_v<Status, Result<int>>);
  static_assert(!std::is_convertible_v<int, Result<OnlyExplicitFromInt>>);
  static_assert(std::is_constructible_v<Result<OnlyExplicitFromInt>, int>);
  const Result<OnlyExplicitFromInt> result(5);
  EXPECT_EQ(result->value, 5);
}

using ResultDeathTest = ::testing::Test;

TEST(ResultDeathTest, ValueOnErrorAbortsWithTheStatus) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const Result<int> result = Status::Corruption("bad block");
  EXPECT_DEATH((void)result.value(), "value\\(\\) called on an error: Corruption: bad block");
  EXPECT_DEATH((void)*result, "Corruption: bad block");
}

TEST(ResultDeathTest, ArrowOnErrorAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Result<std::string> result = Status::NotFound("x");
  EXPECT_DEATH((void)result->size(), "NotFound: x");
}

TEST(ResultDeathTest, ConstructionFromOkStatusAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH((void)Result<int>(Status::OK()), "Result constructed from an ok Status");
}

// ---------------------------------------------------------------------------------------------
// ROTOR_RETURN_IF_ERROR / ROTOR_ASSIGN_OR_RETURN

// Counts how often an expression passed to a macro is evaluated.
class EvaluationCounter {
 public:
  Status Step(Status status) {
    ++calls_;
    return status;
  }
  Result<int> Value(Result<int> result) {
    ++calls_;
    return result;
  }
  int calls() const { return calls_; }

 private:
  int calls_ = 0;
};

Status TwoSteps(EvaluationCounter& counter, Status first, Status second) {
  ROTOR_RETURN_IF_ERROR(counter.Step(std::move(first)));
  ROTOR_RETURN_IF_ERROR(counter.Step(std::move(second)));
  return Status::OK();
}

TEST(ReturnIfErrorTest, ContinuesOnOk) {
  EvaluationCounter counter;
  EXPECT_TRUE(TwoSteps(counter, Status::OK(), Status::OK()).ok());
  EXPECT_EQ(counter.calls(), 2);
}

TEST(ReturnIfErrorTest, ReturnsTheFirstErrorAndEvaluatesOnce) {
  EvaluationCounter counter;
  const Status status = TwoSteps(counter, Status::IOError("disk"), Status::OK());
  EXPECT_EQ(status.code(), StatusCode::kIOError);
  EXPECT_EQ(status.message(), "disk");
  EXPECT_EQ(counter.calls(), 1);
}

Result<std::string> StepThenName(Status step) {
  ROTOR_RETURN_IF_ERROR(std::move(step));
  return std::string("done");
}

TEST(ReturnIfErrorTest, WorksInFunctionsReturningResult) {
  EXPECT_EQ(*StepThenName(Status::OK()), "done");
  EXPECT_EQ(StepThenName(Status::Aborted("stop")).status().code(), StatusCode::kAborted);
}

Result<int> SumOfTwo(EvaluationCounter& counter, Result<int> a, Result<int> b) {
  ROTOR_ASSIGN_OR_RETURN(const int x, counter.Value(std::move(a)));
  ROTOR_ASSIGN_OR_RETURN(auto y, counter.Value(std::move(b)));
  return x + y;
}

TEST(AssignOrReturnTest, AssignsValues) {
  EvaluationCounter counter;
  const Result<int> sum = SumOfTwo(counter, 2, 3);
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(*sum, 5);
  EXPECT_EQ(counter.calls(), 2);
}

TEST(AssignOrReturnTest, PropagatesTheErrorAndStops) {
  EvaluationCounter counter;
  const Result<int> sum = SumOfTwo(counter, Status::OutOfRange("offset {}", 10), 3);
  EXPECT_EQ(sum.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(sum.status().message(), "offset 10");
  EXPECT_EQ(counter.calls(), 1);
}

Status AssignToExisting(Result<int> input, int& out) {
  ROTOR_ASSIGN_OR_RETURN(out, std::move(input));
  return Status::OK();
}

TEST(AssignOrReturnTest, AssignsToAnExistingVariable) {
  int out = 0;
  EXPECT_TRUE(AssignToExisting(11, out).ok());
  EXPECT_EQ(out, 11);
  EXPECT_EQ(AssignToExisting(Status::Internal("bug"), out).code(), StatusCode::kInternal);
  EXPECT_EQ(out, 11);
}

Result<int> OwnedValue(Result<std::unique_ptr<int>> input) {
  ROTOR_ASSIGN_OR_RETURN(std::unique_ptr<int> owned, std::move(input));
  return *owned;
}

TEST(AssignOrReturnTest, MovesMoveOnlyValues) {
  EXPECT_EQ(*OwnedValue(std::make_unique<int>(6)), 6);
  EXPECT_EQ(OwnedValue(Status::NotFound("none")).status().code(), StatusCode::kNotFound);
}

Result<int> SumOfPair(Result<std::pair<int, int>> input) {
  ROTOR_ASSIGN_OR_RETURN(auto pair, std::move(input));
  const auto [first, second] = pair;
  return first + second;
}

TEST(AssignOrReturnTest, ValueWithCommaInItsTypeGoesThroughAuto) {
  EXPECT_EQ(*SumOfPair(std::make_pair(4, 5)), 9);
  EXPECT_THAT(SumOfPair(Status::Corruption("pair")).status().ToString(), HasSubstr("pair"));
}

}  // namespace
}  // namespace rotor
