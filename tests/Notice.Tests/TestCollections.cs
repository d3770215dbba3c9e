namespace Notice.Tests;

/// <summary>Tests that redirect the console run on their own, after every parallel test.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ConsoleCollection
{
    public const string Name = "console";
}

/// <summary>
/// Tests that keep both cores busy for tens of seconds (the AppHost with its services and browser,
/// the built-in model's universal-head run) take turns, so that neither starves the other's
/// timeouts; they still run beside the rest of the suite.
/// </summary>
[CollectionDefinition(Name)]
public sealed class HeavyCpuCollection
{
    public const string Name = "heavy cpu";
}
