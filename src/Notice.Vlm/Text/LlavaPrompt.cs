namespace Notice.Vlm.Text;

/// <summary>The llava-1.5 conversation template NOTICE puts every question in.</summary>
public static class LlavaPrompt
{
    /// <summary>The placeholder token that LLaVA replaces by the image features.</summary>
    public const string ImageToken = "<image>";

    /// <summary>The template's part before the question.</summary>
    public static string Prefix => $"USER: {ImageToken}\n";

    public static string Format(string question) => $"{Prefix}{question} ASSISTANT:";
}
