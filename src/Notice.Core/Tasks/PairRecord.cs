using System.Text.Json.Serialization;

namespace Notice.Core.Tasks;

/// <summary>
/// One line of a pairs manifest (design §6): a clean / corrupt pair and its two-option question.
/// Image paths are relative to the manifest's folder (see <see cref="PairsManifest"/>), so a
/// prepared task folder can be moved or copied to another machine as it is.
/// </summary>
public sealed record PairRecord
{
    /// <summary>Unique within the manifest, e.g. <c>shapes-color-0007</c>.</summary>
    [JsonPropertyName("id")] public required string Id { get; init; }

    /// <summary>Task name, e.g. <c>shapes-color</c>, <c>svo-probes</c>; heads are compared across tasks.</summary>
    [JsonPropertyName("task")] public required string Task { get; init; }

    /// <summary>What the question is about (color, verb, texture, ...); selection balances on it.</summary>
    [JsonPropertyName("category")] public required string Category { get; init; }

    /// <summary>Clean image, relative to the manifest's folder.</summary>
    [JsonPropertyName("image")] public required string Image { get; init; }

    /// <summary>Image for image corruption (SIP): it shows the wrong answer.</summary>
    [JsonPropertyName("corrupt_image")] public required string CorruptImage { get; init; }

    /// <summary>Optional mask PNG of the region where the two images may differ (synthetic tasks only).</summary>
    [JsonPropertyName("mask")] public string? Mask { get; init; }

    /// <summary>The clean question, naming both options, e.g. <c>Is the shape red or blue?</c>.</summary>
    [JsonPropertyName("prompt")] public required string Prompt { get; init; }

    /// <summary>
    /// Prompt for text corruption (STR): the same template with both options swapped for two other
    /// options of the same token lengths. Null only while a task is being built, before
    /// <see cref="StrCorruption.Assign"/>; a manifest on disk always has one.
    /// </summary>
    [JsonPropertyName("corrupt_prompt")] public string? CorruptPrompt { get; init; }

    /// <summary>The correct option; the clean image shows it.</summary>
    [JsonPropertyName("answer")] public required string Answer { get; init; }

    /// <summary>The other option; the corrupt image shows it.</summary>
    [JsonPropertyName("wrong_answer")] public required string WrongAnswer { get; init; }
}
